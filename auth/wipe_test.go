package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
)

func testRevokeAndWipe(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	s, _ := openTest(t, clk)
	seed(t, s)
	dev := crdt.NewReplicaID()
	tr, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s.Verify(tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.PendingWipe(ctx, cl); ok || err != nil {
		t.Fatalf("pending wipe before any request: %v %v", ok, err)
	}
	if _, err := s.ConfirmWipe(ctx, dev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("confirm without a request: %v", err)
	}
	d, err := s.RevokeAndWipe(ctx, dev)
	if err != nil || !d.Revoked || d.RevokedReason != RevokedByAdmin || d.WipeRequestedAt.IsZero() {
		t.Fatalf("revoke and wipe: %+v %v", d, err)
	}
	first := d.WipeRequestedAt
	clk.Add(time.Hour)
	if d, _ = s.RevokeAndWipe(ctx, dev); !d.WipeRequestedAt.Equal(first) {
		t.Fatalf("second request moved the time: %v", d.WipeRequestedAt)
	}
	if err := s.CheckDevice(ctx, cl); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("check of a wiping device: %v", err)
	}
	// The token has expired by now: Verify refuses it, VerifySignature
	// still identifies the device for the wipe order.
	if _, err := s.Verify(tr.AccessToken); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("verify an hour later: %v", err)
	}
	old, err := s.VerifySignature(tr.AccessToken)
	if err != nil || old.Replica() != dev {
		t.Fatalf("verify signature: %+v %v", old, err)
	}
	if ok, err := s.PendingWipe(ctx, old); !ok || err != nil {
		t.Fatalf("pending wipe: %v %v", ok, err)
	}
	other := *old
	other.Subject = "someone-else"
	if ok, _ := s.PendingWipe(ctx, &other); ok {
		t.Fatal("pending wipe for another user's claims")
	}
	b := []byte(tr.AccessToken)
	i := strings.LastIndexByte(tr.AccessToken, '.') + 10
	b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A'] // flip one signature character
	tampered := string(b)
	if _, err := s.VerifySignature(tampered); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("tampered token: %v", err)
	}
	if _, err := s.VerifySignature("not.a.token"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("garbage: %v", err)
	}
	d, err = s.ConfirmWipe(ctx, dev)
	if err != nil || d.WipeConfirmedAt.IsZero() {
		t.Fatalf("confirm: %+v %v", d, err)
	}
	confirmed := d.WipeConfirmedAt
	clk.Add(time.Minute)
	if d, _ = s.ConfirmWipe(ctx, dev); !d.WipeConfirmedAt.Equal(confirmed) {
		t.Fatal("a second report moved the confirmation")
	}
	if ds, err := s.Devices(ctx, cl.Subject); err != nil || len(ds) != 1 || ds[0].WipeConfirmedAt.IsZero() {
		t.Fatalf("device listing %+v %v", ds, err)
	}
	// A login cannot reinstate it.
	if _, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab"); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("login of a wiped device: %v", err)
	}
}
