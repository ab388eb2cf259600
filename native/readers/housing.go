package readers

import (
	"joinedup/native/record"

	"joinedup/native/pystr"
)

// The `housing` kind (connectors/sources/housing.py): a tenancy export.

// housingColumns is housing.INDICATOR_COLUMNS (indexes below follow it).
var housingColumns = []string{
	"rent_arrears_weeks", "temporary_accommodation", "homelessness_stage", "eviction_notice", "last_updated",
}

var housingKind = &agencyKind{name: "housing tenancy", columns: housingColumns, indicators: housingIndicators}

func init() {
	register("housing", func(input string, mapping record.Mapping, size int, rejects record.RejectSink) (record.Reader, error) {
		return openAgencyCSV(housingKind, input, mapping, size, rejects)
	})
}

// housingIndicators is housing.indicators, values and refusals in the same order.
func housingIndicators(v []string) ([]Indicator, *badValue) {
	asAt, bad := isoDate(v, 4, "last_updated")
	if bad != nil {
		return nil, bad
	}
	var out []Indicator
	arrears, bad := number(v, 0, "rent_arrears_weeks")
	if bad != nil {
		return nil, bad
	}
	if arrears != nil {
		out = append(out, Indicator{"housing.rent_arrears_weeks", arrears, asAt})
	}
	temporary, bad := yes(v, 1, "temporary_accommodation")
	if bad != nil {
		return nil, bad
	}
	if temporary {
		out = append(out, Indicator{"housing.temporary_accommodation", true, asAt})
	}
	if s := pystr.Strip(v[2]); s != "" {
		out = append(out, Indicator{"housing.homelessness_application", s, asAt})
	}
	if s := pystr.Strip(v[3]); s != "" {
		out = append(out, Indicator{"housing.eviction_notice", s, asAt})
	}
	return out, nil
}
