package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/doorstep-health/doorstep/api"
)

// serverLogout asks the server to end this device's session (POST
// /v1/auth/logout), so that the refresh chain cannot be used even by a copy
// of the stored tokens. An expired access token is first refreshed. Callers
// hold authMu.
func (r *Replica) serverLogout(ctx context.Context, t *tokens) error {
	err := r.postLogout(ctx, t.Access)
	var p *api.Problem
	if errors.As(err, &p) && p.Code == api.CodeTokenExpired && t.Refresh != "" {
		var tr api.TokenResponse
		if err := r.postJSON(ctx, "/v1/auth/refresh", api.RefreshRequest{RefreshToken: t.Refresh, DeviceID: r.id.String()}, &tr); err != nil {
			return err
		}
		err = r.postLogout(ctx, tr.AccessToken)
	}
	return err
}

func (r *Replica) postLogout(ctx context.Context, access string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.server+"/v1/auth/logout", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Accept", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	b, err := readBounded(resp.Body, 1<<20)
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	return decodeProblem(resp, b)
}
