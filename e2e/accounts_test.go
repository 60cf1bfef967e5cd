package e2e

import (
	"net/http"

	"github.com/doorstep-health/doorstep/api"
)

// refreshTokens refreshes the device's tokens (picking up new teams or a
// promotion) and fails the test if the server refuses.
func (d *device) refreshTokens() {
	d.e.t.Helper()
	var tr api.TokenResponse
	st, p := d.e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: d.refresh, DeviceID: d.id.String()}, &tr)
	if st != http.StatusOK {
		d.e.t.Fatalf("refresh %s: %d %+v", d.user, st, p)
	}
	d.access, d.refresh = tr.AccessToken, tr.RefreshToken
}
