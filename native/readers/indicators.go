package readers

import "time"

// Indicator mirrors connectors.records.Indicator. Value is nil, string, int64, float64 or bool.
type Indicator struct {
	Code  string
	Value any
	Date  *time.Time
}

// IndicatorsJSON mirrors connectors.content.indicators_json: the list as compact JSON with
// sorted keys ({"code","date","value"}), byte for byte what Python's json.dumps gives
// (its float repr, its string escaping with ensure_ascii). TODO(helper C).
func IndicatorsJSON(inds []Indicator) string { panic("TODO(helper C)") }
