package console

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestHostLines(t *testing.T) {
	var out bytes.Buffer
	c := New(&out, Options{}, "web1", "db")
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

func TestJSONLines(t *testing.T) {
	var out bytes.Buffer
	c := New(&out, Options{JSON: true}, "web1")
	c.Host("web1").Printf("hello")
	c.Summary([]Row{{Host: "web1", Result: "ok"}}, 0)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %s", len(lines), out.String())
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &v); err != nil || v["host"] != "web1" || v["msg"] != "hello" {
		t.Errorf("line %s: %v %v", lines[0], v, err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &v); err != nil || v["result"] != "ok" {
		t.Errorf("summary %s: %v %v", lines[1], v, err)
	}
}

func TestColorOnlyWhenAsked(t *testing.T) {
	var out bytes.Buffer
	on := true
	New(&out, Options{Color: &on}, "a").Host("a").Printf("x")
	if !strings.Contains(out.String(), "\x1b[") {
		t.Errorf("no colour: %q", out.String())
	}
	out.Reset()
	New(&out, Options{}, "a").Host("a").Printf("x")
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("colour on a non-terminal: %q", out.String())
	}
}

func TestErrorf(t *testing.T) {
	tests := []struct {
		name string
		json bool
		want func(t *testing.T, out string)
	}{
		{"text", false, func(t *testing.T, out string) {
			if out != "Error: refused\nsee above\n" {
				t.Errorf("got %q", out)
			}
		}},
		{"json", true, func(t *testing.T, out string) {
			if strings.Count(out, "\n") != 1 {
				t.Fatalf("not one line: %q", out)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil || v["level"] != "error" || v["msg"] != "refused\nsee above" {
				t.Errorf("line %s: %v %v", out, v, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			New(&out, Options{JSON: tt.json}).Errorf("refused\nsee %s\n", "above")
			tt.want(t, out.String())
		})
	}
}
