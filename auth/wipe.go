package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/golang-jwt/jwt/v5"
)

// Audit actions of remote wipes.
const (
	ActionDeviceWipeRequest = "device.wipe_request"
	ActionDeviceWipeConfirm = "device.wipe_confirm"
)

// RevokeAndWipe revokes a device as RevokeDevice does (an admin revokes
// devices of users the admin sees; ErrNotFound otherwise) and asks for a
// remote wipe: the next time the device presents one of its access tokens
// on the sync route (even an expired one), the server orders it to delete
// its local data instead of refusing it (see PendingWipe), and records the
// device's confirmation (ConfirmWipe). Asking again for a device already
// wiping keeps the first request time. Both steps are audited.
func (s *Service) RevokeAndWipe(ctx context.Context, replica crdt.ReplicaID) (Device, error) {
	return s.revoke(ctx, replica, true)
}

// PendingWipe reports whether the device the claims are bound to has a
// remote wipe requested, and the claims' subject is its user, as the store
// holds it now.
func (s *Service) PendingWipe(ctx context.Context, c *Claims) (bool, error) {
	d, err := s.Device(ctx, c.Replica())
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.Revoked && !d.WipeRequestedAt.IsZero() && d.User == c.Subject, nil
}

// ConfirmWipe records that a device reported its remote wipe done, with
// an audit entry whose actor is the device's user. Only the first report
// counts; a device with no wipe requested is left alone and ErrNotFound
// returned.
func (s *Service) ConfirmWipe(ctx context.Context, replica crdt.ReplicaID) (Device, error) {
	var d Device
	err := s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		d = Device{}
		if err := getJSON(txn, pDevice+replica.String(), &d); err != nil {
			return err
		}
		if d.WipeRequestedAt.IsZero() {
			return fmt.Errorf("%w: no wipe requested", ErrNotFound)
		}
		if !d.WipeConfirmedAt.IsZero() {
			return nil
		}
		var u userRecord
		if err := getJSON(txn, pUser+d.User, &u); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		d.WipeConfirmedAt = s.cfg.Now().UTC()
		if err := setJSON(txn, pDevice+d.ID, d); err != nil {
			return err
		}
		e := userAudit(ActionDeviceWipeConfirm, &u.User, nil, map[string]string{"user": d.User,
			"requested": d.WipeRequestedAt.Format(time.RFC3339)})
		e.ActorID, e.ActorName, e.ActorRole, e.Device = d.User, u.Name, u.Role, d.ID
		e.TargetKind, e.TargetID = "device", d.ID
		return audit(e)
	})
	if err != nil {
		return Device{}, fmt.Errorf("confirm wipe of device %s: %w", replica, err)
	}
	s.cfg.Logger.Info("device reported remote wipe done", "device", d.ID, "user", d.User, "requested", d.WipeRequestedAt)
	return d, nil
}

// VerifySignature checks an access token as Verify does (algorithm, key,
// issuer, audience, subject, role, device) except that an expired token is
// accepted. It serves only to deliver a wipe order to a revoked device that
// has been offline past its token's lifetime: such a token must never
// authorize anything else.
func (s *Service) VerifySignature(token string) (*Claims, error) {
	c := &Claims{}
	_, err := jwt.ParseWithClaims(token, c, s.verifyKey, jwt.WithValidMethods([]string{SigningMethod}), jwt.WithoutClaimsValidation())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	if c.Issuer != s.cfg.Issuer || !slices.Contains(c.Audience, s.cfg.Audience) || c.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: issuer, audience or expiry", ErrUnauthorized)
	}
	if c.Subject == "" || !ValidRole(c.Role) {
		return nil, fmt.Errorf("%w: token lacks subject or role", ErrUnauthorized)
	}
	if r, err := crdt.ParseReplicaID(c.Device); err != nil || r.IsZero() {
		return nil, fmt.Errorf("%w: token device: %v", ErrUnauthorized, err)
	}
	return c, nil
}
