package encode

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"joinedup/native/record"
	"joinedup/native/standardise"
)

// A realistic source: names, dates and postcodes repeat (a few hundred given names, a few
// thousand family names, ~30k dates, 50k postcodes), identifiers and addresses are nearly
// unique, some values are missing or invalid.
const benchBatch = 20_000

var (
	benchGiven  = words(400, 5, 1)
	benchFamily = words(3000, 7, 2)
	benchStreet = []string{"High St", "Station Road", "Church Lane", "Victoria Gdns", "Ocean Rd", "Marine Tce", "The Parade", "Mill Lane"}
)

func words(n, length int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 0))
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 3+r.IntN(length))
		for j := range b {
			b[j] = byte('a' + r.IntN(26))
		}
		out[i] = string(b)
	}
	return out
}

func postcode(r *rand.Rand) string {
	k := r.IntN(50_000)
	return fmt.Sprintf("%c%c%d %d%c%c", 'A'+k%26, 'A'+k/26%26, 1+k/676%20, k/13520%10, 'A'+k%7, 'B'+k%11)
}

func nhsNumber(r *rand.Rand) string {
	for {
		var d [10]int
		sum := 0
		for i := range 9 {
			d[i] = r.IntN(10)
			sum += d[i] * (10 - i)
		}
		c := 11 - sum%11
		if c == 11 {
			c = 0
		}
		if c != 10 {
			d[9] = c
			var b strings.Builder
			for _, x := range d {
				b.WriteByte(byte('0' + x))
			}
			return b.String()
		}
	}
}

func strp(s string) *string { return &s }

// rawBatch is a batch of raw columns as a reader yields them.
func rawBatch(seed uint64) *record.Batch {
	r := rand.New(rand.NewPCG(seed, 1))
	cols := map[string][]*string{}
	for _, f := range record.IdentityFields {
		cols[f] = make([]*string, benchBatch)
	}
	for i := range benchBatch {
		set := func(f, v string) { cols[f][i] = strp(v) }
		set("local_id", fmt.Sprintf("R%d-%d", seed, i))
		g := benchGiven[r.IntN(len(benchGiven))]
		set("given_name", strings.ToUpper(g[:1])+g[1:])
		if r.IntN(3) == 0 {
			set("middle_names", benchGiven[r.IntN(len(benchGiven))])
		}
		set("family_name", strings.ToUpper(benchFamily[r.IntN(len(benchFamily))]))
		if r.IntN(20) != 0 {
			d := time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(30_000))
			if r.IntN(2) == 0 {
				set("date_of_birth", d.Format("2006-01-02"))
			} else {
				set("date_of_birth", d.Format("02/01/2006"))
			}
		}
		set("postcode", postcode(r))
		if r.IntN(10) < 7 {
			set("nhs_number", nhsNumber(r))
		}
		if r.IntN(2) == 0 {
			set("nino", fmt.Sprintf("AB%06dC", r.IntN(1_000_000)))
		}
		set("sex", []string{"M", "F", "m", "female", "U"}[r.IntN(5)])
		set("address", fmt.Sprintf("%d %s", 1+r.IntN(300), benchStreet[r.IntN(len(benchStreet))]))
		set("locality", []string{"Margate", "Ramsgate", "Broadstairs", "Westgate"}[r.IntN(4)])
	}
	return &record.Batch{RowNumbers: make([]int, benchBatch), Columns: cols}
}

// standardBatch is a batch of standardised identities like rawBatch's.
func standardBatch(seed uint64) []record.Identity {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]record.Identity, benchBatch)
	for i := range out {
		id := &out[i]
		g, f := benchGiven[r.IntN(len(benchGiven))], benchFamily[r.IntN(len(benchFamily))]
		id.LocalID, id.Given, id.GivenCanon, id.Family = strp(fmt.Sprint(i)), strp(g), strp(g), strp(f)
		id.GivenPhon, id.FamilyPhon = strp(strings.ToUpper(g[:3])), strp(strings.ToUpper(f[:3]))
		if r.IntN(20) != 0 {
			d := time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(30_000))
			id.DOB = &d
		}
		pc := postcode(r)
		id.Postcode, id.PcSector, id.PcDistrict = strp(pc), strp(pc[:len(pc)-2]), strp(pc[:strings.IndexByte(pc, ' ')])
		if r.IntN(10) < 7 {
			id.NHSNumber = strp(nhsNumber(r))
		}
		if r.IntN(2) == 0 {
			id.NINO = strp(fmt.Sprintf("AB%06d", r.IntN(1_000_000)))
		}
		id.Address = strp(fmt.Sprintf("%d %s", 1+r.IntN(300), strings.ToLower(benchStreet[r.IntN(len(benchStreet))])))
		id.Locality = strp("margate")
	}
	return out
}

func benchKeys() record.Keys {
	keys := record.Keys{}
	for _, p := range []string{"token/nhs_number", "token/nino", "match-key", "clk-salt", "clk/given", "clk/family", "clk/address"} {
		keys[p] = []byte("k:" + p)
	}
	for _, g := range partGroup[:pNames] {
		keys["part/"+g] = []byte("k:part/" + g)
	}
	return keys
}

// BenchmarkEncodeIdentities: tokens, match keys and salted filters of standardised
// identities (the encoder without standardisation), over 10 batches of fresh rows.
func BenchmarkEncodeIdentities(b *testing.B) {
	enc, err := New(DefaultSettings(), benchKeys(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	batches := make([][]record.Identity, 10)
	for i := range batches {
		batches[i] = standardBatch(uint64(i))
	}
	cpu := cpuTime()
	for i := 0; b.Loop(); i++ {
		enc.EncodeIdentities(batches[i%len(batches)])
	}
	report(b, cpu)
}

// BenchmarkEncodeBatch: the whole encode stage (standardise + encode) of raw batches.
func BenchmarkEncodeBatch(b *testing.B) {
	std := func() (s any) {
		defer func() {
			if r := recover(); r != nil {
				s = nil
			}
		}()
		return benchStandardiser(b)
	}()
	if std == nil {
		b.Skip("standardise is not implemented yet")
	}
	enc, err := New(DefaultSettings(), benchKeys(), benchStandardiser(b), record.Mapping{})
	if err != nil {
		b.Fatal(err)
	}
	batches := make([]*record.Batch, 10)
	for i := range batches {
		batches[i] = rawBatch(uint64(i))
	}
	// Warm the caches once, as a long extract has them warm.
	for _, batch := range batches {
		enc.EncodeBatch(batch)
	}
	cpu := cpuTime()
	for i := 0; b.Loop(); i++ {
		enc.EncodeBatch(batches[i%len(batches)])
	}
	report(b, cpu)
}

func benchStandardiser(b *testing.B) *standardise.Standardiser {
	s, err := standardise.New(nicknamesPath, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	if err != nil {
		b.Fatal(err)
	}
	s.NameWords("probe")
	return s
}

// cpuTime is the process's user + system CPU time: on a shared machine, records per CPU
// second is steadier than records per wall second (both are reported).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func report(b *testing.B, cpuStart time.Duration) {
	records := float64(b.N * benchBatch)
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	if cpu := cpuTime() - cpuStart; cpu > 0 {
		b.ReportMetric(records/cpu.Seconds(), "records/cpu-s")
	}
}
