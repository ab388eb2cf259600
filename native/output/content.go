package output

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"strings"
)

// NonceBytes is connectors.content.NONCE_BYTES (AES-GCM's standard nonce).
const NonceBytes = 12

// SizeClasses is connectors.content.SIZE_CLASSES, for callers that have no job to say.
var SizeClasses = []int{1024, 4096, 16384}

// PyJSONString is Python's json.dumps of a str (ensure_ascii): the kind and source are
// spliced into every plaintext as json.dumps writes them, so the bytes match.
func PyJSONString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	const hex = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&0xf])
		b.WriteByte(hex[r>>8&0xf])
		b.WriteByte(hex[r>>4&0xf])
		b.WriteByte(hex[r&0xf])
	}
	for _, r := range s { // invalid UTF-8 reads as U+FFFD (Python strings cannot hold it)
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= 0x20 && r <= 0x7e:
			b.WriteByte(byte(r))
		case r < 0x10000:
			u(r)
		default:
			r -= 0x10000
			u(0xd800 | (r>>10)&0x3ff)
			u(0xdc00 | r&0x3ff)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// PaddedLen is the length connectors.content.padded pads n bytes to: the smallest class
// that holds it, else a multiple of the largest; n itself when there are no classes.
// Padding hides how many indicators a row has behind its size class.
func PaddedLen(n int, classes []int) int {
	if len(classes) == 0 {
		return n
	}
	for _, size := range classes {
		if n <= size {
			return size
		}
	}
	top := classes[len(classes)-1]
	return n + (top-n%top)%top
}

// Pad appends the trailing spaces (valid JSON whitespace) that padded adds.
func Pad(data []byte, classes []int) []byte {
	for n := PaddedLen(len(data), classes) - len(data); n > 0; {
		k := min(n, len(spaces))
		data = append(data, spaces[:k]...)
		n -= k
	}
	return data
}

var spaces = []byte(strings.Repeat(" ", 1024))

// contentSealer builds and encrypts content plaintexts, byte for byte what
// connectors.content.encrypt_batch assembles, reusing its buffers (one per goroutine).
type contentSealer struct {
	aead    cipher.AEAD
	head    string // `{"area":`
	kindRef string // `,"kind":<kind>,"ref":"`
	tail    string // `","source":<source>}`
	aadPre  string // `<extract_id>|`
	classes []int
	plain   []byte
	aad     []byte
}

func newContentSealer(key []byte, extractID, source, kind string, classes []int) (*contentSealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("content key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &contentSealer{
		aead:    aead,
		head:    `{"area":`,
		kindRef: `,"kind":` + PyJSONString(kind) + `,"ref":"`,
		tail:    `","source":` + PyJSONString(source) + `}`,
		aadPre:  extractID + "|",
		classes: classes,
	}, nil
}

// plaintext assembles one row's padded plaintext; indicators "" means "[]".
func (s *contentSealer) plaintext(ref []byte, area, indicators string) []byte {
	p := append(s.plain[:0], s.head...)
	p = append(p, area...)
	p = append(p, `,"indicators":`...)
	if indicators == "" {
		p = append(p, "[]"...)
	} else {
		p = append(p, indicators...)
	}
	p = append(p, s.kindRef...)
	p = append(p, ref...)
	p = append(p, s.tail...)
	p = Pad(p, s.classes)
	s.plain = p
	return p
}

// PaddedPlaintext is the padded plaintext encrypt_batch encrypts for one row (for tests).
func PaddedPlaintext(extractID, source, kind, ref, area, indicators string, classes []int) string {
	s, _ := newContentSealer(make([]byte, 32), extractID, source, kind, classes)
	return string(s.plaintext([]byte(ref), area, indicators))
}
