package readers

import (
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Python's semantics the CSV readers' output and messages depend on. str.strip() and
// repr(str) are pystr.Strip and pystr.Repr(s, pystr.SurrogateEscape): a CSV field can
// hold raw bytes that are not UTF-8, which Python read as surrogate escapes.

// pyPath is str(pathlib.Path(input)) on POSIX: empty and "." parts and repeated or
// trailing slashes dropped ("..", unlike filepath.Clean, kept), exactly two leading
// slashes kept, "." for nothing. Python opens and names the file by it.
func pyPath(input string) string {
	if input == "" {
		return "."
	}
	lead := ""
	if strings.HasPrefix(input, "/") {
		lead = "/"
		if strings.HasPrefix(input, "//") && !strings.HasPrefix(input, "///") {
			lead = "//"
		}
	}
	var parts []string
	for _, part := range strings.Split(input, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	out := lead + strings.Join(parts, "/")
	if out == "" {
		return "."
	}
	return out
}

// strerror is what Python prints for an OSError (exc.strerror): the C library's text,
// which Go's errno table spells in lower case.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// sortedSet is sorted(set(items)) (byte order is code point order in UTF-8).
func sortedSet(items []string) []string {
	seen := make(map[string]bool, len(items))
	out := make([]string, 0, len(items))
	for _, s := range items {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
