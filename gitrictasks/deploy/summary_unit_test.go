package deploy

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
)

// TestUnitSummary prints the summary table of a run whose hosts ended in
// every way, and compares it with a golden string.
func TestUnitSummary(t *testing.T) {
	t.Parallel()
	rows := []struct {
		host     string
		from, to string
		res      HostResult
	}{
		{"web-1", sha1, sha2, HostResult{Outcome: OutcomeOK, Seed: 120 * time.Millisecond, Downtime: 45 * time.Millisecond}},
		{"web-2", sha1, sha2, HostResult{Outcome: OutcomeFailed, Seed: 98 * time.Millisecond, Downtime: 1500 * time.Millisecond}},
		{"web-3", sha1, sha2, HostResult{Outcome: OutcomeRolledBack, Seed: 101 * time.Millisecond, Downtime: 2 * time.Second}},
		{"db.example.com:2222", sha1, sha2, HostResult{Outcome: OutcomeRefused}},
		{"w4", "", sha2, HostResult{Outcome: OutcomeAborted, Seed: 3 * time.Millisecond}},
		{"w5", sha1, sha2, HostResult{Outcome: OutcomeFailed, Finishing: true, Seed: time.Millisecond}},
		{"w6", sha2, sha2, HostResult{Skipped: true, Outcome: OutcomeOK}},
		{"w7", "", "", HostResult{}}, // never reached: no outcome
	}
	for _, c := range []struct {
		json bool
		want string
	}{
		{want: `host                 from     to           seed  downtime  result
web-1                1111111  2222222     120ms      45ms  ok
web-2                1111111  2222222      98ms    1500ms  failed
web-3                1111111  2222222     101ms    2000ms  rolled-back
db.example.com:2222  1111111  2222222         -         -  refused
w4                   -        2222222       3ms         -  aborted
w5                   1111111  2222222       1ms         -  finishing on the host
w6                   2222222  2222222         -         -  ok (already there)
w7                   -        -               -         -  failed
8 host(s) in TOOK
`},
		{json: true, want: `{"downtime_ms":45,"from":"1111111","host":"web-1","result":"ok","seed_ms":120,"summary":true,"to":"2222222"}
{"downtime_ms":1500,"from":"1111111","host":"web-2","result":"failed","seed_ms":98,"summary":true,"to":"2222222"}
{"downtime_ms":2000,"from":"1111111","host":"web-3","result":"rolled-back","seed_ms":101,"summary":true,"to":"2222222"}
{"downtime_ms":0,"from":"1111111","host":"db.example.com:2222","result":"refused","seed_ms":0,"summary":true,"to":"2222222"}
{"downtime_ms":0,"from":"-","host":"w4","result":"aborted","seed_ms":3,"summary":true,"to":"2222222"}
{"downtime_ms":0,"from":"1111111","host":"w5","result":"finishing on the host","seed_ms":1,"summary":true,"to":"2222222"}
{"downtime_ms":0,"from":"2222222","host":"w6","result":"ok (already there)","seed_ms":0,"summary":true,"to":"2222222"}
{"downtime_ms":0,"from":"-","host":"w7","result":"failed","seed_ms":0,"summary":true,"to":"-"}
`},
	} {
		out := &syncBuffer{}
		opts := Options{Stage: Stage{Name: "s", Path: "app"}, Out: out, JSON: c.json, Who: "w",
			dial: func(context.Context, remote.Address, func(string, ...any)) (link, error) { return nil, nil }}
		for _, r := range rows {
			opts.Stage.Hosts = append(opts.Stage.Hosts, r.host)
		}
		f, err := newFleet(context.Background(), settings{Options: opts})
		if err != nil {
			t.Fatal(err)
		}
		d := &rollout{fleet: f}
		for i, h := range d.hosts {
			h.res = rows[i].res
			h.res.Host = rows[i].host
			h.fromSrc, h.toSrc = hashOf(rows[i].from), hashOf(rows[i].to)
		}
		d.summary()
		got := regexp.MustCompile(`(?m)^(\d+ host\(s\) in ).*$`).ReplaceAllString(out.String(), "${1}TOOK")
		if got != c.want {
			t.Errorf("JSON %v: summary:\n%s\nwant:\n%s", c.json, got, c.want)
			gl, wl := strings.Split(got, "\n"), strings.Split(c.want, "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Errorf("first difference, line %d:\n got %q\nwant %q", i+1, gl[i], wl[i])
					break
				}
			}
		}
	}
}
