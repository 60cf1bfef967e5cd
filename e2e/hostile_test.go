package e2e

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/server"
	"github.com/klauspost/compress/zstd"
)

// heapPeak samples HeapInuse every few milliseconds until stopped and
// returns the largest reading.
func heapPeak(t *testing.T) (stop func() uint64) {
	var (
		ms   runtime.MemStats
		peak uint64
		wg   gosync.WaitGroup
	)
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

func gzipBytes(t *testing.T, write func(w *gzip.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	write(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHostileSyncInput(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	ann.sync()
	valid := encode(t, ann.request(ann.change(ann.write("wigan", "people", "p1", "given_name", "Edna"))))
	ann.seq-- // the change above is never sent successfully here

	// 64 MiB of zeros, four times the decoded cap, in about 280 KiB.
	zeros := make([]byte, 1<<20)
	bomb := gzipBytes(t, func(w *gzip.Writer) {
		for i := 0; i < 64; i++ {
			w.Write(zeros)
		}
	})
	// 64 MiB of zeros in zstd, a few KiB, its frame stating the size.
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zbomb := zenc.EncodeAll(make([]byte, 64<<20), nil)
	zenc.Close()
	// A gzip of a request whose declared array length is 4G.
	hugeInGzip := gzipBytes(t, func(w *gzip.Writer) { w.Write([]byte{0x82, 0xa1, 'v', 0x01, 0xa1, 'c', 0xdd, 0xff, 0xff, 0xff, 0xff}) })
	deep := append([]byte{0x81, 0xa1, 'c'}, bytes.Repeat([]byte{0x91}, 1<<20)...)
	// A value nested 40 deep inside an otherwise valid op.
	deepValue := bytes.Replace(valid, []byte{0xa4, 'E', 'd', 'n', 'a'}, append(bytes.Repeat([]byte{0x91}, 40), 0x01), 1)
	if bytes.Equal(deepValue, valid) {
		t.Fatal("test bug: value not found in request bytes")
	}

	type hostile struct {
		name   string
		body   []byte
		hdr    map[string]string
		status int
		code   api.Code
	}
	gz := map[string]string{"Content-Encoding": "gzip"}
	cases := []hostile{
		{"empty", nil, nil, 400, api.CodeMalformedBody},
		{"array32 4G", []byte{0x82, 0xa1, 'v', 0x01, 0xa1, 'c', 0xdd, 0xff, 0xff, 0xff, 0xff}, nil, 413, api.CodeBodyTooLarge},
		{"map32 4G", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, nil, 413, api.CodeBodyTooLarge},
		{"str32 4G", []byte{0x81, 0xa1, 'v', 0xdb, 0xff, 0xff, 0xff, 0xff}, nil, 413, api.CodeBodyTooLarge},
		{"bin32 4G", []byte{0x81, 0xa1, 'd', 0xc6, 0xff, 0xff, 0xff, 0xff}, nil, 413, api.CodeBodyTooLarge},
		{"array32 4G inside gzip", hugeInGzip, gz, 413, api.CodeBodyTooLarge},
		{"deep nesting 1M", deep, nil, 413, api.CodeBodyTooLarge},
		{"deep nesting in an op value", deepValue, nil, 413, api.CodeBodyTooLarge},
		{"wrong type", []byte{0x81, 0xa1, 'v', 0xa1, 'x'}, nil, 400, api.CodeMalformedBody},
		{"not a map", []byte{0x93, 1, 2, 3}, nil, 400, api.CodeMalformedBody},
		{"gzip bomb 64 MiB", bomb, gz, 413, api.CodeBodyTooLarge},
		{"broken gzip", []byte{0x1f, 0x8b, 0x08, 0, 0, 0}, gz, 400, api.CodeMalformedBody},
		{"gzip claimed, not gzip", valid, gz, 400, api.CodeMalformedBody},
		{"zstd bomb 64 MiB", zbomb, map[string]string{"Content-Encoding": "zstd"}, 413, api.CodeBodyTooLarge},
		{"zstd claimed, not zstd", valid, map[string]string{"Content-Encoding": "zstd"}, 400, api.CodeMalformedBody},
		{"unknown encoding", valid, map[string]string{"Content-Encoding": "br"}, 415, api.CodeUnsupportedMedia},
		{"JSON content type", valid, map[string]string{"Content-Type": "application/json"}, 415, api.CodeUnsupportedMedia},
		{"9 MiB body", bytes.Repeat([]byte{0xc0}, 9<<20), nil, 413, api.CodeBodyTooLarge},
		{"wrong protocol", encode(t, &api.SyncRequest{Protocol: 99, Replica: ann.id}), nil, 400, api.CodeUnsupportedProtocol},
	}
	for n := 1; n < len(valid); n += max(1, len(valid)/16) {
		cases = append(cases, hostile{"truncated at " + strconv.Itoa(n), valid[:n], nil, 400, api.CodeMalformedBody})
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := heapPeak(t)
	for _, c := range cases {
		st, _, p := e.postSync(ann.access, c.body, c.hdr)
		if st != c.status || p == nil || p.Code != c.code {
			t.Errorf("%s: %d %+v, want %d %s", c.name, st, p, c.status, c.code)
		}
	}
	peak := stop()
	t.Logf("heap in use: %d MiB before, peak %d MiB", before.HeapInuse>>20, peak>>20)
	if peak > before.HeapInuse+256<<20 {
		t.Errorf("heap peaked at %d MiB, %d MiB above the start", peak>>20, (peak-before.HeapInuse)>>20)
	}
	// The server still serves, the same device included.
	resp := ann.sync(ann.change(ann.write("wigan", "people", "p1", "given_name", "Edna")))
	if resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("after hostile input: %+v", resp.Results)
	}
}

func TestHostileJSONInput(t *testing.T) {
	e := newEnv(t)
	dan := e.login("dan")
	post := func(path, ct, body string) (int, *api.Problem) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+dan.access)
		res, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(res.Body)
		return res.StatusCode, e.jsonProblem(res, buf.Bytes())
	}
	cases := []struct {
		name, path, ct, body string
		status               int
		code                 api.Code
	}{
		{"login: not JSON", "/v1/auth/login", "application/json", "{", 400, api.CodeMalformedBody},
		{"login: wrong type", "/v1/auth/login", "application/json", `{"username":1}`, 400, api.CodeMalformedBody},
		{"login: form body", "/v1/auth/login", "application/x-www-form-urlencoded", "username=ann", 415, api.CodeUnsupportedMedia},
		{"login: 100 KiB", "/v1/auth/login", "application/json", `{"username":"` + strings.Repeat("a", 100<<10) + `"}`, 413, api.CodeBodyTooLarge},
		{"teams: deep nesting", "/v1/admin/teams", "application/json", strings.Repeat("[", 30000), 400, api.CodeMalformedBody},
		{"teams: trailing data", "/v1/admin/teams", "application/json", `{"id":"x","name":"y"} {}`, 400, api.CodeMalformedBody},
		{"teams: stray bracket", "/v1/admin/teams", "application/json", `{"id":"x","name":"y"}]`, 400, api.CodeMalformedBody},
		{"unknown route", "/v1/nope", "application/json", "{}", 404, api.CodeNotFound},
	}
	for _, c := range cases {
		st, p := post(c.path, c.ct, c.body)
		if st != c.status || p.Code != c.code {
			t.Errorf("%s: %d %+v, want %d %s", c.name, st, p, c.status, c.code)
		}
	}
	st, p := e.doJSON(http.MethodDelete, "/v1/sync", dan.access, nil, nil)
	if st != http.StatusMethodNotAllowed || p.Code != api.CodeMethodNotAllowed {
		t.Errorf("DELETE /v1/sync: %d %+v", st, p)
	}
}

// TestDeviceRateLimit: a device over its budget gets 429 rate_limited (in
// msgpack on the sync route) while another device is still served.
func TestDeviceRateLimit(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.DeviceRate, c.DeviceBurst = 0.01, 3 })
	ann, bea := e.login("ann"), e.login("bea")
	var last int
	var p *api.Problem
	for i := 0; i < 4; i++ {
		last, _, p = ann.trySync()
	}
	if last != http.StatusTooManyRequests || p.Code != api.CodeRateLimited {
		t.Fatalf("fourth request: %d %+v", last, p)
	}
	if st, _, p := bea.trySync(); st != http.StatusOK {
		t.Fatalf("another device: %d %+v", st, p)
	}
}
