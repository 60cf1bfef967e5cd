package server

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/klauspost/compress/zstd"
	"github.com/labstack/echo/v4"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func codeOf(err error) api.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestGzipExact: the work budget is charged from the gzip trailer, so the
// body must inflate to exactly what the trailer says, in one member.
func TestGzipExact(t *testing.T) {
	body := bytes.Repeat([]byte("doorstep "), 1000)
	good := gz(t, body)
	n, err := gzipSize(good, 1<<20)
	if err != nil || n != int64(len(body)) {
		t.Fatalf("gzipSize = %d, %v", n, err)
	}
	if out, err := gunzipExact(good, n); err != nil || !bytes.Equal(out, body) {
		t.Fatalf("gunzipExact: %v", err)
	}
	// A trailer claiming less than the body inflates to.
	lying := bytes.Clone(good)
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], 100)
	if _, err := gunzipExact(lying, 100); codeOf(err) != api.CodeBodyTooLarge {
		t.Fatalf("lying trailer: %v", err)
	}
	// Claiming more: the gzip reader's own size check fails.
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], uint32(len(body)+10))
	if _, err := gunzipExact(lying, int64(len(body)+10)); codeOf(err) != api.CodeMalformedBody {
		t.Fatalf("trailer too large: %v", err)
	}
	// Two members: the second would inflate past the trailer's size.
	two := append(bytes.Clone(good), good...)
	n, _ = gzipSize(two, 1<<20)
	if _, err := gunzipExact(two, n); codeOf(err) != api.CodeMalformedBody {
		t.Fatalf("two members: %v", err)
	}
	// A bomb is refused from its trailer, before inflating.
	bomb := gz(t, make([]byte, 2<<20))
	if _, err := gzipSize(bomb, 1<<20); codeOf(err) != api.CodeBodyTooLarge {
		t.Fatalf("bomb: %v", err)
	}
	if _, err := gzipSize([]byte("not gzip at all, honestly"), 1<<20); codeOf(err) != api.CodeMalformedBody {
		t.Fatalf("not gzip: %v", err)
	}
}

func zs(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// TestZstdExact: as TestGzipExact, for zstd bodies: the budget is charged
// from the frame's declared content size, and the body must decode to
// exactly that, with nothing decoded past it.
func TestZstdExact(t *testing.T) {
	body := bytes.Repeat([]byte("doorstep "), 1000)
	good := zs(t, body)
	n, err := zstdSize(good, 1<<20)
	if err != nil || n != int64(len(body)) {
		t.Fatalf("zstdSize = %d, %v", n, err)
	}
	if out, err := unzstdExact(good, n); err != nil || !bytes.Equal(out, body) {
		t.Fatalf("unzstdExact: %v", err)
	}
	// A bomb is refused from its header, before decoding: 64 MiB of
	// zeros in a few KiB, against a 1 MiB bound.
	bomb := zs(t, make([]byte, 64<<20))
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb of %d bytes", len(bomb))
	}
	if _, err := zstdSize(bomb, 1<<20); codeOf(err) != api.CodeBodyTooLarge {
		t.Fatalf("bomb: %v", err)
	}
	// A second frame would decode past the first's declared size: refused
	// without writing past it.
	two := append(bytes.Clone(good), zs(t, make([]byte, 64<<20))...)
	n, _ = zstdSize(two, 1<<20)
	if _, err := unzstdExact(two, n); codeOf(err) != api.CodeBodyTooLarge {
		t.Fatalf("a second frame: %v", err)
	}
	// A streamed frame that does not state its size.
	var streamed bytes.Buffer
	zw, _ := zstd.NewWriter(&streamed, zstd.WithEncoderConcurrency(1))
	zw.Write(body)
	zw.Flush() // the header goes out before the size is known
	zw.Write(body)
	zw.Close()
	if _, err := zstdSize(streamed.Bytes(), 1<<20); codeOf(err) != api.CodeMalformedBody {
		t.Fatalf("no content size: %v", err)
	}
	for name, b := range map[string][]byte{
		"not zstd":      []byte("not zstd at all, honestly"),
		"truncated":     good[:len(good)/2],
		"garbage after": append(bytes.Clone(good), "trailing"...),
		"corrupt":       append(bytes.Clone(good[:len(good)-8]), 1, 2, 3, 4, 5, 6, 7, 8),
	} {
		n, err := zstdSize(b, 1<<20)
		if err == nil {
			_, err = unzstdExact(b, n)
		}
		if codeOf(err) != api.CodeMalformedBody {
			t.Errorf("%s: %v, want malformed_body", name, err)
		}
	}
}

// FuzzZstdBody: whatever a zstd body holds, the server decodes at most the
// size its header declares (within the bound), or refuses it with a typed
// error, and never panics.
func FuzzZstdBody(f *testing.F) {
	f.Add(zs(f, bytes.Repeat([]byte("doorstep "), 100)))
	f.Add(zs(f, make([]byte, 1<<20)))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x05, 0x29, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, wire []byte) {
		n, err := zstdSize(wire, 64<<10)
		if err != nil {
			if codeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := unzstdExact(wire, n)
		if err != nil {
			if codeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if int64(len(out)) != n {
			t.Fatalf("%d bytes, %d declared", len(out), n)
		}
	})
}

func testAdmission(mod func(*Config)) *admission {
	cfg := Config{DataDir: "x"}
	cfg.defaults()
	if mod != nil {
		mod(&cfg)
	}
	return newAdmission(&cfg)
}

func syncCtx(body []byte, hdr map[string]string) echo.Context {
	req := httptest.NewRequest("POST", "/v1/sync", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return echo.New().NewContext(req, httptest.NewRecorder())
}

// TestAdmissionBudgets: a full wire budget answers 503 at once; a full
// work budget makes large requests wait and then 503, while small ones
// draw on their own budget; a device gets at most MaxSyncsPerDevice.
func TestAdmissionBudgets(t *testing.T) {
	a := testAdmission(func(c *Config) { c.BodyBudget = 4 << 10 })
	if _, _, err := a.readSyncBody(syncCtx(make([]byte, 64<<10), nil)); codeOf(err) != api.CodeUnavailable {
		t.Fatalf("over the wire budget: %v", err)
	}
	body, release, err := a.readSyncBody(syncCtx(make([]byte, 1000), nil))
	if err != nil || len(body) != 1000 {
		t.Fatalf("within the budget: %d %v", len(body), err)
	}
	release()

	a = testAdmission(func(c *Config) { c.BudgetWait = 50 * time.Millisecond })
	if !a.work.TryAcquire(a.workMax) {
		t.Fatal("acquire")
	}
	big := make([]byte, SmallSyncBytes+1)
	start := time.Now()
	if _, _, err := a.readSyncBody(syncCtx(big, nil)); codeOf(err) != api.CodeUnavailable || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("work budget full: %v after %s", err, time.Since(start))
	}
	if _, release, err := a.readSyncBody(syncCtx(make([]byte, 100), nil)); err != nil {
		t.Fatalf("small request while large ones wait: %v", err)
	} else {
		release()
	}
	a.work.Release(a.workMax)

	var first *deviceSlot
	for i, want := range []bool{true, true, false} {
		s, got := a.devices.enter("d1")
		if got != want {
			t.Fatalf("enter #%d of one device = %v", i+1, got)
		}
		if i == 0 {
			first = s
		}
	}
	if _, ok := a.devices.enter("d2"); !ok {
		t.Fatal("another device refused")
	}
	first.leave()
	if _, ok := a.devices.enter("d1"); !ok {
		t.Fatal("a left slot is reusable")
	}
}
