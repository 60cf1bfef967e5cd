package client

// The transport: one sync round trip over HTTP (request encoding, gzip,
// bounded reading and decoding, problem details, token refresh on expiry)
// and the JSON auth calls. Nothing here touches the local store except
// through the token helpers in auth.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
)

// gzipThreshold is the request body size from which a request is gzipped.
const gzipThreshold = 16 << 10

// syncRequest sends one sync request with the stored access token,
// refreshing it once if the server says it expired.
func (r *Replica) syncRequest(ctx context.Context, req *api.SyncRequest) (*api.SyncResponse, wire, error) {
	return r.sendSync(ctx, req, 0, false)
}

// sendSync sends one sync request. A pipelined one (pipelined: sent while
// another is in flight, after: the last seq that one pushed, sent as
// api.HeaderAfterSeq when not 0) neither refreshes the token nor signs
// out: it fails, and the request sent alone after it does either.
func (r *Replica) sendSync(ctx context.Context, req *api.SyncRequest, after uint64, pipelined bool) (*api.SyncResponse, wire, error) {
	body, err := encodeRequest(req)
	if err != nil {
		return nil, wire{}, err
	}
	for attempt := 0; ; attempt++ {
		tok, err := r.accessToken()
		if err != nil {
			return nil, wire{}, err
		}
		resp, w, err := r.postSync(ctx, body, tok, after)
		code := problemCode(err)
		switch {
		case err == nil:
			return resp, w, nil
		case pipelined:
			return nil, w, err
		case (code == api.CodeTokenExpired || code == api.CodeUnauthorized) && attempt == 0:
			if err := r.refresh(ctx, tok); err != nil {
				return nil, w, err
			}
			continue
		case code == api.CodeDeviceRevoked || code == api.CodeDeviceMismatch || code == api.CodeUnauthorized ||
			code == api.CodeTokenExpired || code == api.CodeInvalidCredentials || code == api.CodeRefreshReused:
			return nil, w, r.signOut(err)
		}
		return nil, w, err
	}
}

func encodeRequest(req *api.SyncRequest) ([]byte, error) {
	b, err := marshalCompact(req)
	if err != nil {
		return nil, fmt.Errorf("client: encode sync request: %w", err)
	}
	return b, nil
}

// wire counts the body bytes of one round trip as they crossed the network
// (after compression).
type wire struct{ sent, received int }

func (r *Replica) postSync(ctx context.Context, body []byte, token string, after uint64) (*api.SyncResponse, wire, error) {
	var w wire
	raw, coding := body, ""
	if len(body) > gzipThreshold {
		var err error
		if coding, body, err = compressBody(body, r.zstdRequests.Load()); err != nil { // coding.go
			return nil, w, err
		}
	}
	w.sent = len(body)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, r.serverURL()+"/v1/sync", bytes.NewReader(body))
	if err != nil {
		return nil, w, fmt.Errorf("client: sync request: %w", err)
	}
	hreq.Header.Set("Content-Type", api.ContentType)
	hreq.Header.Set("Accept", api.ContentType)
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set("Accept-Encoding", acceptEncoding) // coding.go
	if coding != "" {
		hreq.Header.Set("Content-Encoding", coding)
	}
	if after > 0 {
		hreq.Header.Set(api.HeaderAfterSeq, strconv.FormatUint(after, 10)) // pipeline.go
	}
	hresp, err := r.http.Do(hreq)
	if err != nil {
		return nil, w, fmt.Errorf("client: sync: %w", unavailable(ctx, err))
	}
	defer hresp.Body.Close()
	r.zstdRequests.Store(readsZstd(hresp.Header.Get("Accept-Encoding"))) // coding.go
	if hresp.StatusCode == http.StatusUnsupportedMediaType && coding == "zstd" {
		// The server no longer reads zstd (replaced by an older one):
		// the same request again, gzipped.
		r.zstdRequests.Store(false)
		return r.postSync(ctx, raw, token, after)
	}
	b, err := readBounded(hresp.Body, r.opts.MaxResponseBytes)
	if err != nil {
		return nil, w, fmt.Errorf("client: sync: read reply: %w", unavailable(ctx, err))
	}
	w.received = len(b)
	if b, err = inflateReply(hresp.Header.Get("Content-Encoding"), b, r.opts.MaxResponseBytes); err != nil { // coding.go
		return nil, w, fmt.Errorf("client: sync: inflate reply: %w", err)
	}
	if hresp.StatusCode != http.StatusOK {
		return nil, w, fmt.Errorf("client: sync: %w", problemError(hresp, b))
	}
	resp, err := api.DecodeSyncResponse(b)
	if err != nil {
		return nil, w, fmt.Errorf("client: sync: decode reply (%d bytes): %w", len(b), err)
	}
	if resp.Protocol != 0 && resp.Protocol != api.ProtocolVersion {
		return nil, w, fmt.Errorf("client: sync: server speaks protocol %d, want %d", resp.Protocol, api.ProtocolVersion)
	}
	if len(resp.Packed) > 0 {
		// The packed pull encoding (docs/PROTOCOL.md "Packed pull
		// encoding"), bounded and
		// validated; from here on the reply is handled as if its changes
		// had come in the plain form.
		if len(resp.Changes) > 0 {
			return nil, w, fmt.Errorf("client: sync: reply carries both plain and packed changes")
		}
		if resp.Changes, err = api.UnpackChanges(resp.Packed); err != nil {
			return nil, w, fmt.Errorf("client: sync: decode packed changes: %w", err)
		}
		resp.Packed = nil
	}
	r.readsPacked.Store(resp.ReadsPacked)
	r.pipelines.Store(capsOf(resp)) // pipeline.go
	return resp, w, nil
}

// unavailable marks a failure to reach the server or to read its reply as
// ErrUnavailable, unless it is the caller's context ending or a reply over
// its size bound.
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, errReplyTooLarge) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// problemError decodes an error reply; a 502, 503 or 504 (the server or a
// proxy in front of it not serving) also matches ErrUnavailable.
func problemError(resp *http.Response, body []byte) error {
	p := decodeProblem(resp, body)
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %w", ErrUnavailable, p)
	}
	return p
}

// errReplyTooLarge: a reply body exceeded the bound it was read with.
var errReplyTooLarge = errors.New("reply too large")

func readBounded(rd io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(rd, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: over %d bytes", errReplyTooLarge, max)
	}
	return b, nil
}

// unmarshalBounded decodes a whole msgpack body; trailing bytes and decoder
// panics are errors.
func unmarshalBounded(b []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder panic: %v", p)
		}
	}()
	rd := bytes.NewReader(b)
	if err := msgpack.NewDecoder(rd).Decode(v); err != nil {
		return err
	}
	if rd.Len() != 0 {
		return fmt.Errorf("%d trailing bytes", rd.Len())
	}
	return nil
}

// decodeProblem turns an error reply into an *api.Problem: problem+json or
// problem+msgpack as the server sent it, or one made from the status.
func decodeProblem(resp *http.Response, body []byte) *api.Problem {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p api.Problem
	var err error
	switch {
	case mt == api.ProblemMsgpackContentType || strings.HasSuffix(mt, "msgpack"):
		err = unmarshalBounded(body, &p)
	case strings.HasSuffix(mt, "json"):
		err = json.Unmarshal(body, &p)
	default:
		err = errors.New("not a problem")
	}
	if err != nil || p.Code == "" {
		code := api.CodeInternal
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			code = api.CodeUnauthorized
		case resp.StatusCode == http.StatusForbidden:
			code = api.CodeForbidden
		case resp.StatusCode == http.StatusNotFound:
			code = api.CodeNotFound
		case resp.StatusCode == http.StatusTooManyRequests:
			code = api.CodeRateLimited
		case resp.StatusCode == http.StatusRequestEntityTooLarge:
			code = api.CodeBodyTooLarge
		case resp.StatusCode >= 500:
			code = api.CodeUnavailable
		case resp.StatusCode >= 400:
			code = api.CodeBadRequest
		}
		detail := string(body)
		if len(detail) > 200 {
			detail = detail[:200]
		}
		np := api.NewProblem(code, detail)
		np.Status = resp.StatusCode
		np.RetryAfterMillis = retryAfterHeader(resp.Header.Get("Retry-After")).Milliseconds()
		return np
	}
	if p.Status == 0 {
		p.Status = resp.StatusCode
	}
	if p.RetryAfterMillis == 0 {
		p.RetryAfterMillis = retryAfterHeader(resp.Header.Get("Retry-After")).Milliseconds()
	}
	return &p
}

// retryAfterHeader parses a Retry-After header: delay seconds or an HTTP
// date. It returns 0 for none or a malformed one.
func retryAfterHeader(h string) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 || n > 24*3600 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// postJSON posts in as JSON to path and decodes a 200 reply into out; any
// other reply becomes an *api.Problem.
func (r *Replica) postJSON(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.serverURL()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return unavailable(ctx, err)
	}
	defer resp.Body.Close()
	b, err := readBounded(resp.Body, 1<<20)
	if err != nil {
		return fmt.Errorf("read reply: %w", unavailable(ctx, err))
	}
	if resp.StatusCode != http.StatusOK {
		return problemError(resp, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	return nil
}
