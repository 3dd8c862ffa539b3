package console

import (
	"bytes"
	"testing"
)

func TestHostLines(t *testing.T) {
	var out bytes.Buffer
	c := New(&out, "web1", "db")
	w := c.Host("db")
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r50%\rthree\n\n"))
	w.Write([]byte("tail"))
	w.Flush()
	c.Printf("done")
	want := "[db]   one\n[db]   two\n[db]   50%\n[db]   three\n[db]   tail\ndone\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
