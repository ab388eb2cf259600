// Command joinedup-connector is the native (Go) engine of `joinedup extract --engine
// native`: it reads one JSON job on stdin (native/README.md), writes linkage.parquet,
// content.parquet, keymap.parquet and rejects.csv into the job's out_dir, and prints the
// counts. The Python command does everything around it (mapping, keys, manifest, hashes,
// atomic replace).
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"time"

	"joinedup/native/encode"
	"joinedup/native/output"
	"joinedup/native/readers"
	"joinedup/native/record"
	"joinedup/native/standardise"
)

// Version is this program's version (`joinedup-connector version`).
const Version = "0.1.0"

// sourceHash is set at build time (scripts/native.sh: -X main.sourceHash=...) to the hash
// of the Go sources, so that connectors/native.py never runs a program built from other
// sources than the ones beside it (it could write a different encoding).
var sourceHash = "unknown"

// job is the JSON job on stdin.
type job struct {
	Kind           string            `json:"kind"`
	Input          string            `json:"input"`
	OutDir         string            `json:"out_dir"`
	SourceName     string            `json:"source_name"`
	ExtractID      string            `json:"extract_id"`
	BatchSize      int               `json:"batch_size"`
	Workers        int               `json:"workers"`
	Mapping        record.Mapping    `json:"mapping"`
	Settings       record.Settings   `json:"settings"`
	LinkageColumns []string          `json:"linkage_columns"`
	Keys           map[string]string `json:"keys"`
	Nicknames      string            `json:"nicknames"`
	Today          string            `json:"today"`
	SizeClasses    *[]int            `json:"size_classes"`
}

// extractError is a bad job value the Python connector reports as ExtractError.
type extractError struct{ msg string }

func (e *extractError) Error() string { return e.msg }

// sourceName is connectors.extract._SOURCE_NAME.
var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: joinedup-connector extract < job.json | joinedup-connector version")
		os.Exit(1)
	}
	switch os.Args[1] {
	case "version":
		line, _ := json.Marshal(map[string]string{"version": Version, "go": runtime.Version(), "source_hash": sourceHash})
		fmt.Println(string(line))
	case "extract":
		counts, err := extract(os.Stdin)
		if err != nil {
			os.Exit(report(err))
		}
		line, _ := json.Marshal(map[string]output.Counts{"counts": counts})
		fmt.Println(string(line))
	default:
		fmt.Fprintf(os.Stderr, "joinedup-connector: unknown command %q\n", os.Args[1])
		os.Exit(1)
	}
}

// report prints an error as the job protocol says and returns the exit status: 2 with a
// JSON line for source, mapping and extract problems, 1 with the reason on stderr else.
func report(err error) int {
	var se *readers.SourceError
	var me *readers.MappingError
	var ee *extractError
	kind := ""
	switch {
	case errors.As(err, &se):
		kind = "source"
	case errors.As(err, &me):
		kind = "mapping"
	case errors.As(err, &ee):
		kind = "extract"
	}
	if kind == "" {
		fmt.Fprintf(os.Stderr, "joinedup-connector: %v\n", err)
		return 1
	}
	line, _ := json.Marshal(map[string]string{"error": kind, "message": err.Error()})
	fmt.Println(string(line))
	return 2
}

func extract(stdin io.Reader) (counts output.Counts, err error) {
	// A panic anywhere (a Go panic exits 2, which means a source problem here) is reported
	// as an internal error.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	var j job
	dec := json.NewDecoder(stdin)
	if err := dec.Decode(&j); err != nil {
		return counts, fmt.Errorf("reading the job: %w", err)
	}
	if !sourceName.MatchString(j.SourceName) {
		return counts, &extractError{fmt.Sprintf("source name %q: use letters, digits, '.', '_', '-' (max 64)", j.SourceName)}
	}
	if j.BatchSize <= 0 {
		j.BatchSize = 20000
	}
	if j.Workers <= 0 {
		j.Workers = 1
	}
	keys := record.Keys{}
	for purpose, h := range j.Keys {
		k, err := hex.DecodeString(h)
		if err != nil {
			return counts, fmt.Errorf("key %q is not hex", purpose)
		}
		keys[purpose] = k
	}
	for _, need := range []string{"ref", "content"} {
		if _, ok := keys[need]; !ok {
			return counts, fmt.Errorf("the job has no %q key", need)
		}
	}
	today, err := time.Parse("2006-01-02", j.Today)
	if err != nil {
		return counts, fmt.Errorf("today: %w", err)
	}
	classes := output.SizeClasses
	if j.SizeClasses != nil {
		classes = *j.SizeClasses
	}

	// Encoders first: a bad setting fails before anything is read or written.
	encoders := make([]func(*record.Batch) record.Encoded, j.Workers)
	for i := range encoders {
		std, err := standardise.New(j.Nicknames, today)
		if err != nil {
			return counts, err
		}
		enc, err := encode.New(j.Settings, keys, std, j.Mapping)
		if err != nil {
			return counts, err
		}
		encoders[i] = enc.EncodeBatch
	}

	w, err := output.Create(output.Config{
		OutDir: j.OutDir, Source: j.SourceName, Kind: j.Kind, ExtractID: j.ExtractID,
		Columns: j.LinkageColumns, RefKey: keys["ref"], ContentKey: keys["content"], SizeClasses: classes,
	})
	if err != nil {
		return counts, err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()

	// The reader's sink is called from whichever goroutine calls Open or Next; the
	// pipeline collects what it gathered after each call, from that goroutine.
	var pending []record.Reject
	sink := func(r record.Reject) { pending = append(pending, r) }
	reader, err := readers.Open(j.Kind, j.Input, j.Mapping, j.BatchSize, sink)
	if err != nil {
		return counts, err
	}
	defer reader.Close()
	rejectsOf := func() []record.Reject {
		r := pending
		pending = nil
		return r
	}
	// Rejects in the order Python writes them with one worker, whatever the workers here
	// (Python's own order shifts with its worker count).
	if err := pipeline(reader, rejectsOf, encoders, 0, progressSink{w}); err != nil {
		return counts, err
	}
	if err := w.Close(); err != nil {
		return counts, err
	}
	return w.Counts(), nil
}

// progressSink prints a {"progress": rows read} line after each batch, which the Python
// command shows on an interactive terminal (a national extract runs for minutes).
type progressSink struct{ *output.Writer }

func (p progressSink) WriteBatch(rowNumbers []int, indicators []string, enc *record.Encoded) error {
	if err := p.Writer.WriteBatch(rowNumbers, indicators, enc); err != nil {
		return err
	}
	fmt.Printf("{\"progress\": %d}\n", p.Counts().Read)
	return nil
}
