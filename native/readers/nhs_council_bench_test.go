package readers

// Read throughput of the council and NHS readers on realistic synthetic sources
// (connectors.synth.write_synthetic_sources: 480,000 people give about 400,000 NHS
// Patients and 200,000 council residents). The sources are made once, by the project's
// Python, in $TMPDIR/joinedup-readers-bench-<people> (never committed):
//
//	go test ./readers -run '^$' -bench 'BenchmarkRead(NHS|Council)' -benchtime 1x

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"joinedup/native/record"
)

func benchSources(b *testing.B) string {
	people := 480000
	if s := os.Getenv("JOINEDUP_BENCH_PEOPLE"); s != "" {
		people, _ = strconv.Atoi(s)
	}
	dir := filepath.Join(os.TempDir(), "joinedup-readers-bench-"+strconv.Itoa(people))
	if _, err := os.Stat(filepath.Join(dir, "council.sqlite")); err == nil {
		return dir
	}
	root, _ := filepath.Abs("../..")
	python := filepath.Join(root, ".venv", "bin", "python")
	if _, err := os.Stat(python); err != nil {
		b.Skip("no project Python to make the synthetic sources")
	}
	cmd := exec.Command(python, "-c", "import sys; from connectors.synth import write_synthetic_sources as w; "+
		"w(sys.argv[1], int(sys.argv[2]), seed=1)", dir, strconv.Itoa(people))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("synth: %v\n%s", err, out)
	}
	return dir
}

func benchRead(b *testing.B, kind, input string) {
	var mapping record.Mapping
	switch kind {
	case "nhs":
		mapping = benchMapping(map[string][]string{"local_id": {"id"}, "nhs_number": {"nhs_number"},
			"given_name": {"given"}, "middle_names": {"middle_names"}, "family_name": {"family"},
			"date_of_birth": {"birthDate"}, "sex": {"gender"}, "postcode": {"postalCode"},
			"address": {"address_line"}, "locality": {"city"}})
	case "council":
		mapping = benchMapping(map[string][]string{"local_id": {"person_ref"}, "nhs_number": {"nhs_number"},
			"nino": {"ni_number"}, "given_name": {"forename"}, "middle_names": {"middle_names"},
			"family_name": {"surname"}, "date_of_birth": {"date_of_birth"}, "sex": {"sex"},
			"postcode": {"postcode"}, "address": {"address_line_1", "address_line_2"}, "locality": {"town"}})
	}
	rows := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Open(kind, input, mapping, 20000, func(record.Reject) {})
		if err != nil {
			b.Fatal(err)
		}
		for {
			batch, err := r.Next()
			if err != nil {
				b.Fatal(err)
			}
			if batch == nil {
				break
			}
			rows += batch.Len()
		}
		r.Close()
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
}

func benchMapping(cols map[string][]string) record.Mapping {
	m := record.Mapping{}
	for k, v := range cols {
		m[k] = record.FieldSpec{Columns: v, Validate: true}
	}
	return m
}

func BenchmarkReadNHS(b *testing.B) { benchRead(b, "nhs", filepath.Join(benchSources(b), "nhs")) }

func BenchmarkReadCouncil(b *testing.B) {
	benchRead(b, "council", filepath.Join(benchSources(b), "council.sqlite"))
}
