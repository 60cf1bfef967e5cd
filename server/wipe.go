package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/labstack/echo/v4"
)

// RevokeRequest is the optional JSON body of POST
// /v1/admin/devices/:id/revoke. With Wipe the device is also told to wipe
// itself on its next contact (see api.SyncResponse.Wipe).
type RevokeRequest struct {
	Wipe bool `json:"wipe"`
}

// revokeOptions reads the optional revoke body; no body means no wipe.
func (s *Server) revokeOptions(c echo.Context) (RevokeRequest, error) {
	var req RevokeRequest
	if r := c.Request(); r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return req, nil
	}
	err := s.bindJSON(c, &req)
	return req, err
}

// authenticateSync is authenticate for the sync route, with one exception:
// a revoked device with a remote wipe pending is not refused but answered
// with a wipe order (deliverWipe), even if its access token has expired,
// so a lost tablet that comes back online after weeks still wipes itself.
func (s *Server) authenticateSync(next echo.HandlerFunc) echo.HandlerFunc {
	authed := s.authenticate(next)
	return func(c echo.Context) error {
		err := authed(c)
		if err == nil || claimsOf(c) != nil {
			return err // authenticated; any error is the handler's
		}
		if !errors.Is(err, auth.ErrDeviceRevoked) && !errors.Is(err, auth.ErrTokenExpired) {
			return err
		}
		if handled, werr := s.deliverWipe(c); handled {
			return werr
		}
		return err
	}
}

// deliverWipe answers a sync request of a revoked device whose wipe is
// pending with a SyncResponse carrying only the clock and Wipe, and
// records the device's confirmation when the request says Wiped. It
// reports false (and writes nothing) when the request is not such a
// device's. Nothing of the request is pushed or pulled.
func (s *Server) deliverWipe(c echo.Context) (bool, error) {
	scheme, tok, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(tok) > 8<<10 {
		return false, nil
	}
	cl, err := s.auth.VerifySignature(strings.TrimSpace(tok))
	if err != nil {
		return false, nil
	}
	ctx := c.Request().Context()
	pending, err := s.auth.PendingWipe(ctx, cl)
	if err != nil || !pending {
		return err != nil, err
	}
	if !s.deviceLimit.allow(cl.Device) {
		return true, problemf(api.CodeRateLimited, "too many requests from this device")
	}
	if err := requireType(c, api.ContentType); err != nil {
		return true, err
	}
	body, err := readBody(c, s.cfg.MaxSyncBody, s.cfg.MaxSyncDecoded)
	if err != nil {
		return true, err
	}
	req, err := DecodeSyncRequest(body, *s.cfg.Limits)
	if err != nil {
		return true, err
	}
	if req.Replica != cl.Replica() {
		return true, problemf(api.CodeDeviceMismatch, "request replica %s does not match the token's device", req.Replica)
	}
	if req.Wiped {
		if _, err := s.auth.ConfirmWipe(ctx, cl.Replica()); err != nil {
			return true, err
		}
	}
	out, err := EncodeSyncResponse(&api.SyncResponse{Protocol: api.ProtocolVersion, Clock: s.engine.Clock(), Wipe: true})
	if err != nil {
		return true, err
	}
	return true, c.Blob(http.StatusOK, api.ContentType, out)
}
