package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// ErrSecretMissing means a secret the stage names is not set locally.
var ErrSecretMissing = errors.New("secret not set")

// readSecrets reads the values of the stage's secrets from the local
// environment, before any host is touched.
func readSecrets(names []string) (map[string]string, error) {
	vals := map[string]string{}
	var missing []string
	for _, n := range names {
		v, ok := os.LookupEnv(n)
		if !ok {
			missing = append(missing, n)
			continue
		}
		vals[n] = v
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s; set it in the environment of this deploy (e.g. from the CI's secret store); nothing was contacted", ErrSecretMissing, strings.Join(missing, ", "))
	}
	return vals, nil
}

// hostEnv is what every command on the host gets: the stage's Env, the
// host's own, the secrets. (The host script sets GITRIC_COMMIT for each
// step: the commit that step puts in place, which for an automatic
// rollback is the old one, not d.commit.)
func (d *rollout) hostEnv(host string) map[string]string {
	env := map[string]string{}
	for k, v := range d.opts.Stage.Env {
		env[k] = v
	}
	for k, v := range d.opts.Stage.HostEnv[host] {
		env[k] = v
	}
	for k, v := range d.secrets {
		env[k] = v
	}
	return env
}

// masker replaces the values of secrets with *** in what it passes on,
// line by line, so that a value split across two writes is caught too.
type masker struct {
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte
	longest int // the longest secret's length
	partial []byte
}

func newMasker(w io.Writer, secrets map[string]string) io.Writer {
	var vals [][]byte
	add := func(v string) {
		if len(v) >= 3 { // shorter would mask ordinary text
			vals = append(vals, []byte(v))
		}
	}
	for _, v := range secrets {
		add(v)
		if strings.Contains(v, "\n") {
			// Masked line by line, a multi-line value (a key) is never
			// whole in one line: each of its lines is masked too.
			for _, l := range strings.Split(v, "\n") {
				add(strings.TrimSuffix(l, "\r"))
			}
		}
	}
	if len(vals) == 0 {
		return w
	}
	// The longest first: a secret that holds another is masked whole.
	sort.SliceStable(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	return &masker{w: w, secrets: vals, longest: len(vals[0])}
}

func (m *masker) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.partial = append(m.partial, p...)
	i := bytes.LastIndexByte(m.partial, '\n')
	if i < 0 && len(m.partial) < 64<<10 {
		return len(p), nil
	}
	if i < 0 {
		// A line too long to hold: pass it on, masked, but for a tail
		// that may be the start of a secret still to come.
		masked := m.mask(m.partial)
		keep := min(len(masked), m.longest-1)
		if _, err := m.w.Write(masked[:len(masked)-keep]); err != nil {
			return 0, err
		}
		m.partial = append([]byte(nil), masked[len(masked)-keep:]...)
		return len(p), nil
	}
	out := m.mask(m.partial[:i+1])
	m.partial = append(m.partial[:0], m.partial[i+1:]...)
	if _, err := m.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (m *masker) mask(b []byte) []byte {
	for _, s := range m.secrets {
		b = bytes.ReplaceAll(b, s, []byte("***"))
	}
	return b
}

// Flush writes what is left of a last line without a newline.
func (m *masker) Flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.partial) > 0 {
		_, _ = m.w.Write(m.mask(m.partial))
		m.partial = nil
	}
}

// dialer opens TCP connections from a host (through its SSH connection).
type dialer interface {
	dialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

func (l sshLink) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return l.host.DialContext(ctx, network, addr)
}

// httpCheck requests the stage's HTTPCheck URL from the host's side until
// it answers 2xx (and, with HTTPCheckVersion, names want's short hash), or
// until timeout. It returns why the last attempt failed.
func httpCheck(ctx context.Context, l link, url string, want string, timeout time.Duration) error {
	dl, ok := l.(dialer)
	if !ok {
		return fmt.Errorf("this host's connection cannot open TCP connections for the HTTP check")
	}
	client := &http.Client{
		Transport: &http.Transport{DialContext: dl.dialContext, DisableKeepAlives: true},
		// Never follow a redirect off the host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		last = httpAttempt(ctx, client, url, want)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not pass within %s: %w", url, timeout, last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func httpAttempt(ctx context.Context, client *http.Client, url, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("it answered %s", resp.Status)
	}
	if want != "" && !bytes.Contains(body, []byte(want)) {
		return fmt.Errorf("it answered %s, but not with %s: the old version may still be answering", resp.Status, want)
	}
	return nil
}

// onceHost is the host that runs the stage's Once command: the first host
// of the "primary" role when the stage has one, else the first host.
func (d *fleet) onceHost() *hostDeploy {
	if primary := d.opts.Stage.Roles["primary"]; len(primary) > 0 {
		for _, h := range d.hosts {
			if h.addr.Name() == primary[0] || h.spec == primary[0] {
				return h
			}
		}
	}
	return d.hosts[0]
}

// httpCheck is the cutover's HTTP check of want on h, or nil for none.
func (d *fleet) httpCheck(h *hostDeploy, want plumbing.Hash) func() error {
	url := d.opts.Stage.HTTPCheck
	if url == "" {
		return func() error { return nil }
	}
	return func() error {
		version := ""
		if d.opts.Stage.HTTPCheckVersion {
			version = short(want)
		}
		err := httpCheck(context.Background(), h.conn, url, version, d.opts.CheckTimeout)
		if err != nil {
			h.log.Printf("HTTP check: %v", err)
		}
		return err
	}
}
