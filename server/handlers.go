package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/labstack/echo/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// healthz reports that the process is up.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports whether both stores are open and take durable writes.
func (s *Server) readyz(c echo.Context) error {
	ctx := c.Request().Context()
	if err := s.auth.Ping(ctx); err != nil {
		return &Error{Code: api.CodeUnavailable, Detail: "auth store not writable", Err: err}
	}
	if err := s.engine.Ping(ctx); err != nil {
		return &Error{Code: api.CodeUnavailable, Detail: "record store not writable", Err: err}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) login(c echo.Context) error {
	var req api.LoginRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	tr, err := s.auth.Login(c.Request().Context(), req.Username, req.Password, req.DeviceID, req.DeviceName)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, tr)
}

func (s *Server) refresh(c echo.Context) error {
	var req api.RefreshRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	tr, err := s.auth.Refresh(c.Request().Context(), req.RefreshToken, req.DeviceID)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, tr)
}

// ExchangeRequest is the JSON body of POST /v1/auth/exchange: an ID token
// of the configured OpenID Connect issuer, and the device to bind the
// returned tokens to.
type ExchangeRequest struct {
	IDToken    string `json:"id_token"`
	DeviceID   string `json:"device_id"`
	DeviceName string `json:"device_name"`
}

func (s *Server) exchange(c echo.Context) error {
	var req ExchangeRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	tr, err := s.auth.Exchange(c.Request().Context(), req.IDToken, req.DeviceID, req.DeviceName)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, tr)
}

// sync handles POST /v1/sync: a bounded, limit-checked msgpack body decoded
// into an api.SyncRequest and handed to the engine with the token's
// identity.
func (s *Server) sync(c echo.Context) error {
	if err := requireType(c, api.ContentType); err != nil {
		return err
	}
	// The body is read before a sync slot is taken (a slow sender holds
	// only its connection), within the per-device and memory bounds of
	// admission.
	dev := claimsOf(c).Device
	slot, ok := s.admit.devices.enter(dev) // limits_device.go
	if !ok {
		return problemf(api.CodeRateLimited, "this device already has %d syncs in flight", s.cfg.MaxSyncsPerDevice)
	}
	defer slot.leave()
	arrived := time.Now()
	ps := s.pipe.enter(dev) // pipeline.go: pipelined pushes wait for the one before
	leavePipe := gosync.OnceFunc(func() { s.pipe.leave(ps) })
	defer leavePipe()
	caller := callerOf(c)
	ctx := c.Request().Context()
	after, pipelined, err := afterSeq(c.Request())
	if err != nil {
		return err
	}
	// held: a pipelined request read, decoded and prepared before it
	// waits for the one before (pipeline.go, "Held decoded").
	held := false
	if pipelined {
		if held, err = s.holdBeforeBody(ctx, ps, caller.Replica, after, arrived, c.Request().ContentLength); err != nil {
			return err
		}
	}
	body, release, endLarge, err := s.admit.readSyncBodyThen(c, func(size int64) (err error) {
		if held {
			held, err = s.holdDecoded(ctx, ps, caller.Replica, after, arrived, size)
		}
		return err
	})
	if err != nil {
		return err
	}
	defer release()
	s.pipe.bodied(ps)
	if !held {
		s.pipe.unreserve(ps)
	}
	freeSlot, err := s.takeSlot(ctx)
	if err != nil {
		return err
	}
	defer func() { freeSlot() }()
	req, err := DecodeSyncRequest(body, *s.cfg.Limits)
	if err != nil {
		return err
	}
	if err := unpackPush(req, *s.cfg.Limits); err != nil { // docs/PROTOCOL.md "Packed pull encoding"
		return err
	}
	if req.Replica != caller.Replica {
		return problemf(api.CodeDeviceMismatch, "request replica %s does not match the token's device", req.Replica)
	}
	prep := s.engine.PrepareSync(caller, req)
	endLarge() // the rest waits for the committer (admission: large syncs)
	if held {
		// Prepared while the request before commits: now wait for it,
		// without a sync slot.
		freeSlot()
		freeSlot = func() {}
		if _, err := s.awaitPredecessor(ctx, ps, caller.Replica, after, arrived, false); err != nil {
			return err
		}
		s.pipe.unreserve(ps)
		if freeSlot, err = s.takeSlot(ctx); err != nil {
			freeSlot = func() {}
			return err
		}
	}
	if pipelined {
		s.metrics.pipelined.WithLabelValues(strconv.FormatBool(held)).Inc()
		s.log.Debug("pipelined sync", "device", dev, "after", after, "prepared", held, "waited", ps.waited, "since_arrival", time.Since(arrived))
	}
	prep.AfterPush = func() { s.pipe.decided(dev) }
	prep.Ordered = func() { s.pipe.decided(dev) } // the next push may queue behind it (sync/overlap.go)
	start := time.Now()
	resp, err := s.engine.SyncPrepared(ctx, prep)
	s.pipe.decided(dev)
	if err != nil {
		return err
	}
	s.syncLatency.observe(time.Since(start))
	pushed := 0
	for _, ch := range req.Changes {
		pushed += len(ch.Ops)
	}
	s.metrics.syncResult(resp, pushed)
	if req.PullEncoding == api.PullEncodingPacked && len(resp.Changes) > 0 { // docs/PROTOCOL.md "Packed pull encoding"
		if resp.Packed, err = api.PackChanges(resp.Changes); err != nil {
			return fmt.Errorf("sync: pack pulled changes: %w", err)
		}
		resp.Changes = nil
	}
	resp.ReadsPacked = true
	resp.Pipelines = true // docs/PROTOCOL.md "Pipelined pushes"
	out, err := EncodeSyncResponse(resp)
	if err != nil {
		return err
	}
	// Decided and encoded: the device's slot is given back before the
	// reply is written, so that a device which has read it may send its
	// next request at once (limits_device.go; docs/PROTOCOL.md "Three in
	// flight"), and a held request of the device no longer counts this one
	// as in the handler.
	leavePipe()
	slot.replying()
	return c.Blob(http.StatusOK, api.ContentType, out)
}

// takeSlot takes one of the sync slots (Config.MaxConcurrentSyncs),
// waiting for one until ctx ends, and returns its release.
func (s *Server) takeSlot(ctx context.Context) (func(), error) {
	select {
	case s.syncSlots <- struct{}{}:
		return func() { <-s.syncSlots }, nil
	case <-ctx.Done():
		return nil, &Error{Code: api.CodeUnavailable, Detail: "gave up waiting for a sync slot", Err: ctx.Err()}
	}
}

// unpackPush replaces a packed push (api.SyncRequest.Packed) by the
// changes its blocks hold (consecutive entries of one seq are one change
// continued across blocks), bounded as the msgpack form is: no more ops in
// all than a msgpack body within l could carry (an op is at least 8
// values there).
func unpackPush(req *api.SyncRequest, l crdt.Limits) error {
	if len(req.Packed) == 0 {
		return nil
	}
	if len(req.Changes) > 0 {
		return problemf(api.CodeMalformedBody, "sync request: both c and 7q")
	}
	// One array for every block's ops; a change continued from block to
	// block is joined in it (api.UnpackPushBlocks); the engine does not
	// validate the ops again (api.SyncRequest.OpsValidated).
	if err := req.UnpackPacked(max(1, l.MaxItems/8)); err != nil {
		return &Error{Code: api.CodeMalformedBody, Detail: "sync request: " + err.Error(), Err: err}
	}
	return nil
}

// DecodeSyncRequest decodes a sync request body from outside: it checks the
// msgpack structure against l (element counts, lengths, nesting) before
// decoding, refuses trailing bytes, and never panics. Errors carry
// api.CodeMalformedBody or api.CodeBodyTooLarge.
func DecodeSyncRequest(body []byte, l crdt.Limits) (req *api.SyncRequest, err error) {
	if err := crdt.CheckLimits(body, l); err != nil {
		code := api.CodeMalformedBody
		if errors.Is(err, crdt.ErrTooLarge) {
			code = api.CodeBodyTooLarge
		}
		return nil, &Error{Code: code, Detail: "sync request: " + err.Error(), Err: err}
	}
	if b := body[0]; b&0xf0 != 0x80 && b != 0xde && b != 0xdf {
		return nil, problemf(api.CodeMalformedBody, "sync request: not a msgpack map")
	}
	defer func() {
		if p := recover(); p != nil {
			req, err = nil, &Error{Code: api.CodeMalformedBody, Detail: "sync request: undecodable", Err: fmt.Errorf("decoder panic: %v", p)}
		}
	}()
	rd := bytes.NewReader(body)
	dec := msgpack.NewDecoder(rd)
	req = new(api.SyncRequest)
	if err := dec.Decode(req); err != nil {
		return nil, &Error{Code: api.CodeMalformedBody, Detail: "sync request: " + err.Error(), Err: err}
	}
	if rd.Len() != 0 {
		return nil, problemf(api.CodeMalformedBody, "sync request: %d trailing bytes", rd.Len())
	}
	return req, nil
}

// EncodeSyncResponse encodes a sync response as the server sends it.
func EncodeSyncResponse(resp *api.SyncResponse) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(resp); err != nil {
		return nil, fmt.Errorf("encode sync response: %w", err)
	}
	return buf.Bytes(), nil
}
