package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// haproxyConfig is the tested reverse-proxy configuration, used verbatim.
const haproxyConfig = "../deploy/haproxy/haproxy.cfg"

// proxyProc is a running haproxy in front of doorstep servers.
type proxyProc struct {
	cmd *exec.Cmd
	url string
}

// startHAProxy runs haproxy with deploy/haproxy/haproxy.cfg on a loopback
// port in front of the two servers. haproxy comes from Debian (.ci/run
// installs it); its absence fails the test unless DOORSTEP_SKIP_HAPROXY=1.
func startHAProxy(t *testing.T, a, b string) *proxyProc {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("DOORSTEP_SKIP_HAPROXY") == "1" {
			t.Skip("haproxy tests skipped: DOORSTEP_SKIP_HAPROXY=1")
		}
		t.Fatal("haproxy not found: install Debian's package (apt-get install haproxy, as .ci/run does), or set DOORSTEP_SKIP_HAPROXY=1 to skip")
	}
	cfg, err := filepath.Abs(haproxyConfig)
	if err != nil {
		t.Fatal(err)
	}
attempts:
	for attempt := 0; attempt < 5; attempt++ {
		// haproxy cannot report a port it chose, so take a free one and
		// hand it over; another process grabbing it meanwhile means a retry.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(bin, "-db", "-f", cfg)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "DOORSTEP_PROXY_BIND="+addr, "DOORSTEP_SERVER_A="+a, "DOORSTEP_SERVER_B="+b)
		var logBuf strings.Builder
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if logBuf.Len() < 64<<10 {
					logBuf.WriteString(sc.Text() + "\n")
				}
			}
			_, _ = io.Copy(io.Discard, stdout)
			cmd.Wait()
			close(exited)
		}()
		p := &proxyProc{cmd: cmd, url: "http://" + addr}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				t.Logf("haproxy exited at start (attempt %d):\n%s", attempt+1, logBuf.String())
				continue attempts
			default:
			}
			if res, err := http.Get(p.url + "/healthz"); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					t.Cleanup(func() {
						cmd.Process.Kill()
						<-exited
					})
					return p
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Kill()
		<-exited
		t.Fatalf("haproxy did not serve on %s:\n%s", addr, logBuf.String())
	}
	t.Fatal("haproxy did not start in 5 attempts")
	return nil
}

// servedBy asks the proxy for /healthz and returns the server that
// answered (the X-Doorstep-Server header the config sets).
func (p *proxyProc) servedBy(t *testing.T) string {
	t.Helper()
	res, err := http.Get(p.url + "/healthz")
	if err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("through the proxy: status %d", res.StatusCode)
	}
	return res.Header.Get("X-Doorstep-Server")
}

// TestHAProxyConfigFailover runs deploy/haproxy/haproxy.cfg in front of two
// real doorstep processes: requests reach both, and once one is killed
// with SIGKILL every request is answered by the other, with none failing
// (a refused connection is redispatched).
func TestHAProxyConfigFailover(t *testing.T) {
	root := t.TempDir()
	var procs []*proc
	for _, name := range []string{"a", "b"} {
		data := filepath.Join(root, name)
		seedData(t, data)
		procs = append(procs, serveProc(t, data))
	}
	px := startHAProxy(t, procs[0].addr, procs[1].addr)
	seen := map[string]int{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		seen[px.servedBy(t)]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("requests reached %v, want both servers", seen)
	}
	procs[0].kill(t)
	// From the kill on, nothing fails: requests the dead server cannot
	// take go to the live one, and after the health checks (inter 1s,
	// fall 2) the dead one is out.
	deadline := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if s := px.servedBy(t); s != "b" {
			t.Fatalf("request %d after killing a answered by %q", n, s)
		}
		n++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d requests after the kill, all answered by b", n)
}
