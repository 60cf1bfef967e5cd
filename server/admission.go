package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"
)

// admission bounds what sync requests hold at once, so that one device (or
// a few) cannot stall the others or push memory past a ceiling:
//
//   - per device, at most maxPerDevice syncs in flight before their
//     replies; more get 429 rate_limited at once, before any body is read
//     (deviceSlots, limits_device.go);
//   - bodies are read before a sync slot or the work budget is taken, at a
//     minimum pace (see paceReader), so a slow sender holds a connection
//     and the bytes it actually sent, nothing others wait for;
//   - the wire budget bounds the bytes of bodies being received, charged
//     as buffers grow; when it is full a request gets 503 unavailable at
//     once (never a wait, so trickling senders cannot queue others);
//   - the work budget bounds decode, engine and reply memory, charged
//     workFactor × the decoded body size before decoding; requests wait
//     for it up to wait, then get 503 unavailable. Requests of at most
//     SmallSyncBytes decoded (nearly every real sync) draw on a separate
//     small budget, so they never queue behind large ones (the semaphore
//     serves waiters in order);
//   - larger requests are also processed at most cap(large) at a time
//     (GOMAXPROCS−1, at least one), so they leave a core to everyone
//     else's small syncs. "Processed" is the request's own work (decode,
//     prechecks, runs merged ahead: what costs CPU in the handler); the
//     sync handler gives the slot back (endLarge) before its push waits
//     in the committer's queue, where it costs the handler nothing, so
//     the next large push can be prepared meanwhile.
type admission struct {
	wire, work, small   *semaphore.Weighted
	wireMax, workMax    int64
	workFactor          int64
	wait                time.Duration
	minRate             float64 // body bytes per second
	grace, readTimeout  time.Duration
	maxWire, maxDecoded int64
	devices             deviceSlots // limits_device.go
	large               chan struct{}
}

func newAdmission(cfg *Config) *admission {
	return &admission{
		wire: semaphore.NewWeighted(cfg.BodyBudget), wireMax: cfg.BodyBudget,
		work: semaphore.NewWeighted(cfg.SyncMemoryBudget), workMax: cfg.SyncMemoryBudget,
		small:      semaphore.NewWeighted(SmallSyncBudget),
		workFactor: SyncMemoryFactor, wait: cfg.BudgetWait,
		minRate: float64(cfg.MinBodyRate), grace: cfg.BodyGrace, readTimeout: cfg.ReadTimeout,
		maxWire: cfg.MaxSyncBody, maxDecoded: cfg.MaxSyncDecoded,
		devices: deviceSlots{max: cfg.MaxSyncsPerDevice},
		large:   make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
	}
}

// SyncMemoryFactor is what a sync request is charged against
// Config.SyncMemoryBudget per byte of decoded body: the body itself, the
// decoded ops, the commit's log entries and Badger transaction, and the
// reply, measured at about this multiple (see docs/SECURITY.md).
const SyncMemoryFactor = 8

// SmallSyncBytes is the largest decoded body that draws on the small
// budget of SmallSyncBudget bytes (room for 32 such requests at once)
// rather than on Config.SyncMemoryBudget.
const (
	SmallSyncBytes  = 256 << 10
	SmallSyncBudget = 32 * SyncMemoryFactor * SmallSyncBytes
)

var errBusy = errors.New("request memory budget full")

// readSyncBody reads and decompresses a sync body within the budgets and
// returns it with the release of its work budget, which the caller must
// call once the reply is written.
func (a *admission) readSyncBody(c echo.Context) (body []byte, release func(), err error) {
	body, release, _, err = a.readSyncBodyThen(c, nil)
	return body, release, err
}

// readSyncBodyThen is readSyncBody that also calls decoded, if not nil,
// with the body's decoded size once its wire bytes are read and before
// the work budget is charged (an error from it ends the read), and
// returns besides release an endLarge that gives back the large-sync
// slot (see admission) early, once the request's own work is done and it
// only waits for the committer (release gives it back if endLarge has
// not). Both are safe to call more than once.
func (a *admission) readSyncBodyThen(c echo.Context, decoded func(size int64) error) (body []byte, release, endLarge func(), err error) {
	fail := func(err error) ([]byte, func(), func(), error) { return nil, nil, nil, err }
	r := c.Request()
	if r.ContentLength > a.maxWire {
		return fail(problemf(api.CodeBodyTooLarge, "body of %d bytes exceeds %d", r.ContentLength, a.maxWire))
	}
	// The request codings this server reads (RFC 9110 §12.5.3: a server
	// may say so in any response), which tells a client it may zstd its
	// requests (docs/PROTOCOL.md §22).
	c.Response().Header().Set(echo.HeaderAcceptEncoding, RequestCodings)
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get(echo.HeaderContentEncoding)))
	var coding string
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		coding = codingGzip
	case codingZstd:
		coding = codingZstd
	default:
		return fail(problemf(api.CodeUnsupportedMedia, "Content-Encoding %q is not supported; use zstd, gzip or none", enc))
	}
	wire, wireHeld, err := a.readWire(c)
	defer a.wire.Release(wireHeld)
	if err != nil {
		return fail(err)
	}
	size := int64(len(wire))
	switch coding {
	case codingGzip:
		size, err = gzipSize(wire, a.maxDecoded)
	case codingZstd:
		size, err = zstdSize(wire, a.maxDecoded)
	}
	if err != nil {
		return fail(err)
	}
	if decoded != nil {
		if err := decoded(size); err != nil {
			return fail(err)
		}
	}
	budget, weight := a.work, min(a.workFactor*max(size, 1), a.workMax)
	if size <= SmallSyncBytes {
		budget = a.small
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.wait)
	defer cancel()
	if err := budget.Acquire(ctx, weight); err != nil {
		return fail(&Error{Code: api.CodeUnavailable, Detail: "server busy: request memory budget full; retry", Err: errBusy})
	}
	var once, onceLarge gosync.Once
	endLarge = func() {}
	if budget == a.work {
		select {
		case a.large <- struct{}{}:
		case <-ctx.Done():
			budget.Release(weight)
			return fail(&Error{Code: api.CodeUnavailable, Detail: "server busy with large syncs; retry", Err: errBusy})
		}
		endLarge = func() { onceLarge.Do(func() { <-a.large }) }
	}
	release = func() { once.Do(func() { endLarge(); budget.Release(weight) }) }
	switch coding {
	case "":
		return wire, release, endLarge, nil
	case codingGzip:
		body, err = gunzipExact(wire, size)
	default:
		body, err = unzstdExact(wire, size)
	}
	if err != nil {
		release()
		return fail(err)
	}
	return body, release, endLarge, nil
}

// RequestCodings are the content codings POST /v1/sync reads, as its
// replies' Accept-Encoding header lists them.
const RequestCodings = "zstd, gzip"

// zstdDecoders decode whole zstd bodies (DecodeAll) into a buffer of the
// size the frame declares and no more (WithDecodeAllCapLimit), within the
// 8 MiB window of RFC 9659; concurrency 1, so no goroutines of their own.
var zstdDecoders = gosync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		panic(fmt.Sprintf("server: zstd decoder: %v", err)) // the options are constants
	}
	return d
}}

// zstdSize returns the decoded size a zstd body declares in its frame
// header (Frame_Content_Size, which every one-shot encoder writes), so
// the work budget is charged before anything is decoded. unzstdExact then
// holds the body to it. A frame that does not declare its size is
// refused.
func zstdSize(wire []byte, maxDecoded int64) (int64, error) {
	var h zstd.Header
	if err := h.Decode(wire); err != nil {
		return 0, &Error{Code: api.CodeMalformedBody, Detail: "zstd body: " + err.Error(), Err: err}
	}
	switch {
	case h.Skippable:
		return 0, problemf(api.CodeMalformedBody, "zstd body: a skippable frame first")
	case !h.HasFCS:
		return 0, problemf(api.CodeMalformedBody, "zstd body: the frame must state its content size")
	case h.FrameContentSize > uint64(maxDecoded):
		return 0, problemf(api.CodeBodyTooLarge, "zstd body decodes to %d bytes, more than %d", h.FrameContentSize, maxDecoded)
	}
	return int64(h.FrameContentSize), nil
}

// unzstdExact decodes a zstd body that must decode to exactly size bytes
// (its frame's declared content size): a body that would decode further,
// in that frame or in frames after it, is refused without writing past
// size bytes.
func unzstdExact(wire []byte, size int64) ([]byte, error) {
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(d)
	out, err := d.DecodeAll(wire, make([]byte, 0, size))
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return nil, problemf(api.CodeBodyTooLarge, "zstd body decodes to more than its declared %d bytes", size)
	case err != nil:
		return nil, &Error{Code: api.CodeMalformedBody, Detail: "zstd body: " + err.Error(), Err: err}
	case int64(len(out)) != size:
		return nil, problemf(api.CodeMalformedBody, "zstd body: %d bytes, %d declared", len(out), size)
	}
	return out, nil
}

// readWire reads the body as sent, at the minimum pace, charging the wire
// budget for its buffer as it grows. held is what the caller must release.
func (a *admission) readWire(c echo.Context) (b []byte, held int64, err error) {
	r := c.Request()
	pr := &paceReader{r: r.Body, rc: http.NewResponseController(c.Response()), start: time.Now(), grace: a.grace, rate: a.minRate}
	pr.limit = pr.start.Add(a.readTimeout)
	defer pr.done()
	grow := func(want int64) error {
		if want <= held {
			return nil
		}
		if !a.wire.TryAcquire(want - held) {
			return &Error{Code: api.CodeUnavailable, Detail: "server busy: too many request bodies in transit; retry", Err: errBusy}
		}
		held = want
		return nil
	}
	// A declared length sizes the buffer at once up to 1 MiB; beyond, the
	// buffer doubles as bytes arrive, so a sender declaring 8 MiB and
	// trickling holds 1 MiB of the budget, not 8.
	next := int64(64 << 10)
	if r.ContentLength >= 0 {
		// One byte more than declared, to see EOF without growing.
		next = min(r.ContentLength+1, 1<<20, a.maxWire+1)
	}
	if err := grow(next); err != nil {
		return nil, held, err
	}
	b = make([]byte, 0, next)
	for {
		if len(b) == cap(b) {
			if int64(len(b)) > a.maxWire {
				return nil, held, problemf(api.CodeBodyTooLarge, "body exceeds %d bytes", a.maxWire)
			}
			want := min(2*int64(cap(b)), a.maxWire+1)
			if err := grow(want); err != nil {
				return nil, held, err
			}
			nb := make([]byte, len(b), want)
			copy(nb, b)
			b = nb
		}
		n, err := pr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > a.maxWire {
			return nil, held, problemf(api.CodeBodyTooLarge, "body exceeds %d bytes", a.maxWire)
		}
		if errors.Is(err, io.EOF) {
			return b, held, nil
		}
		if err != nil {
			return nil, held, bodyReadErr(err)
		}
	}
}

func bodyReadErr(err error) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &Error{Code: api.CodeRequestTimeout, Detail: "request body arrived too slowly", Err: err}
	}
	return wireErr(err, "body")
}

// paceReader reads a request body with a moving read deadline: the n+1st
// byte must have arrived by start + grace + n/rate, and everything by
// limit. A sender trickling a byte every few seconds is cut off once the
// grace is spent, while a tablet on a slow but working link (64 kbit/s is
// 8 KB/s, four times the default rate) is never hurried.
type paceReader struct {
	r     io.Reader
	rc    *http.ResponseController
	start time.Time
	limit time.Time
	grace time.Duration
	rate  float64
	n     int64
	set   bool
}

func (p *paceReader) Read(b []byte) (int, error) {
	if p.rc != nil && p.rate > 0 {
		d := p.start.Add(p.grace + time.Duration(float64(p.n+1)/p.rate*float64(time.Second)))
		if d.After(p.limit) {
			d = p.limit
		}
		if err := p.rc.SetReadDeadline(d); err != nil {
			p.rc = nil // not a network connection (tests): the server's ReadTimeout alone applies
		} else {
			p.set = true
		}
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

// done clears the deadline: left in place, it would fire in the server's
// background read while the request is processed and cancel its context.
func (p *paceReader) done() {
	if p.set {
		_ = p.rc.SetReadDeadline(time.Time{})
	}
}

// gzipSize returns the decoded size a gzip body declares in its trailer
// (ISIZE), so the work budget is charged before anything is inflated.
// gunzipExact then holds the body to it.
func gzipSize(wire []byte, maxDecoded int64) (int64, error) {
	if len(wire) < 18 || wire[0] != 0x1f || wire[1] != 0x8b {
		return 0, problemf(api.CodeMalformedBody, "gzip body: not gzip")
	}
	n := int64(binary.LittleEndian.Uint32(wire[len(wire)-4:]))
	if n > maxDecoded {
		return 0, problemf(api.CodeBodyTooLarge, "gzip body decodes to %d bytes, more than %d", n, maxDecoded)
	}
	return n, nil
}

// gunzipExact inflates one gzip member that must decode to exactly size
// bytes (its trailer's ISIZE, which the gzip reader also checks) with
// nothing after it: a body that would inflate further is refused after at
// most size+1 bytes of output.
func gunzipExact(wire []byte, size int64) ([]byte, error) {
	br := bytes.NewReader(wire)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, wireErr(err, "gzip body")
	}
	zr.Multistream(false)
	out := make([]byte, 0, size+1)
	buf := bytes.NewBuffer(out)
	n, err := buf.ReadFrom(io.LimitReader(zr, size+1))
	if err != nil {
		return nil, wireErr(err, "gzip body")
	}
	if n > size {
		return nil, problemf(api.CodeBodyTooLarge, "gzip body decodes to more than its declared %d bytes", size)
	}
	// Reach the member's end so its CRC and size are checked.
	if _, err := zr.Read(make([]byte, 1)); err != io.EOF {
		if err == nil {
			return nil, problemf(api.CodeMalformedBody, "gzip body: longer than declared")
		}
		return nil, wireErr(err, "gzip body")
	}
	if br.Len() != 0 {
		return nil, problemf(api.CodeMalformedBody, "gzip body: %d bytes after the gzip member (send one member)", br.Len())
	}
	return buf.Bytes(), nil
}
