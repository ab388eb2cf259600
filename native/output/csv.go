package output

import (
	"bufio"
	"strconv"
	"strings"
)

// csvWriter writes rows as Python's csv.writer does with the default (excel) dialect:
// "\r\n" after each row, a field quoted only when it holds a comma, a quote, "\r" or
// "\n", quotes doubled. encoding/csv differs (it quotes leading spaces and rewrites "\n"
// inside quoted fields), and rejects.csv is hashed, so it must be byte-identical.
type csvWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (c *csvWriter) field(s string) {
	if !strings.ContainsAny(s, ",\"\r\n") {
		c.buf = append(c.buf, s...)
		return
	}
	c.buf = append(c.buf, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			c.buf = append(c.buf, '"')
		}
		c.buf = append(c.buf, s[i])
	}
	c.buf = append(c.buf, '"')
}

// row writes one rejects row (row_number, field, reason, action).
func (c *csvWriter) row(rowNumber int, field, reason, action string) error {
	c.buf = strconv.AppendInt(c.buf[:0], int64(rowNumber), 10)
	c.buf = append(c.buf, ',')
	c.field(field)
	c.buf = append(c.buf, ',')
	c.field(reason)
	c.buf = append(c.buf, ',')
	c.field(action)
	c.buf = append(c.buf, '\r', '\n')
	_, err := c.w.Write(c.buf)
	return err
}

// strings writes a row of arbitrary fields (the header; tests).
func (c *csvWriter) strings(fields ...string) error {
	c.buf = c.buf[:0]
	for i, f := range fields {
		if i > 0 {
			c.buf = append(c.buf, ',')
		}
		c.field(f)
	}
	if len(fields) == 1 && fields[0] == "" {
		c.buf = append(c.buf, '"', '"') // csv.writer's one empty field
	}
	c.buf = append(c.buf, '\r', '\n')
	_, err := c.w.Write(c.buf)
	return err
}
