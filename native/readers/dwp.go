package readers

import (
	"strings"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// The `dwp` kind (connectors/sources/dwp.py): DWP's claimant extract.

// dwpColumns is dwp.INDICATOR_COLUMNS (indexes below follow it).
var dwpColumns = []string{
	"benefit_type", "claim_start_date", "wca_outcome", "wca_condition_group", "wca_date",
	"sanctions_12m", "unemployment_spells_5y", "months_unemployed", "lone_parent",
	"skills_need", "extract_date",
}

var dwpKind = &agencyKind{name: "DWP claimant", columns: dwpColumns, indicators: dwpIndicators}

func init() {
	register("dwp", func(input string, mapping record.Mapping, size int, rejects record.RejectSink) (record.Reader, error) {
		return openAgencyCSV(dwpKind, input, mapping, size, rejects)
	})
}

// dwpIndicators is dwp.indicators, values and refusals in the same order.
func dwpIndicators(v []string) ([]Indicator, *badValue) {
	asAt, bad := isoDate(v, 10, "extract_date")
	if bad != nil {
		return nil, bad
	}
	claimStart, bad := isoDate(v, 1, "claim_start_date")
	if bad != nil {
		return nil, bad
	}
	if claimStart == nil {
		claimStart = asAt
	}
	wcaDate, bad := isoDate(v, 4, "wca_date")
	if bad != nil {
		return nil, bad
	}
	if wcaDate == nil {
		wcaDate = asAt
	}
	var out []Indicator
	for _, b := range strings.Split(v[0], ";") {
		if b = pystr.Strip(b); b != "" {
			out = append(out, Indicator{"dwp.benefit", b, claimStart})
		}
	}
	if s := pystr.Strip(v[2]); s != "" {
		out = append(out, Indicator{"dwp.wca_outcome", s, wcaDate})
	}
	if s := pystr.Strip(v[3]); s != "" {
		out = append(out, Indicator{"dwp.wca_condition", s, wcaDate})
	}
	for _, c := range [...]struct {
		k          int
		column, as string
	}{
		{5, "sanctions_12m", "dwp.sanctions_12m"},
		{6, "unemployment_spells_5y", "dwp.unemployment_spells_5y"},
		{7, "months_unemployed", "dwp.months_unemployed"},
	} {
		value, bad := number(v, c.k, c.column)
		if bad != nil {
			return nil, bad
		}
		if value != nil {
			out = append(out, Indicator{c.as, value, asAt})
		}
	}
	lone, bad := yes(v, 8, "lone_parent")
	if bad != nil {
		return nil, bad
	}
	if lone {
		out = append(out, Indicator{"dwp.lone_parent", true, asAt})
	}
	if s := pystr.Strip(v[9]); s != "" {
		out = append(out, Indicator{"dwp.skills_need", s, asAt})
	}
	return out, nil
}
