package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
)

type loginData struct {
	Next     string
	Username string
	Error    string
	CSRF     string
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/console/") || strings.HasPrefix(s, "//") || strings.Contains(s, "\\") {
		return "/console/"
	}
	return s
}

// loginPage shows the sign-in form with a fresh pre-session CSRF token
// (double submit: the cookie and the hidden field must match).
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if v := c.current(r); v != nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	d.CSRF = randomToken()
	http.SetCookie(w, c.cookie(r, cookieLogin, d.CSRF, 3600))
	c.render(w, r, status, "login", page{Title: "Sign in", Data: d})
}

// login checks the password through the auth service, exactly as the
// API's login does (same users, roles, rate limit), with this browser as
// the user's device, and starts a session for a coordinator or admin.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(cookieLogin)
	if err != nil || !sameToken(r.PostFormValue("csrf"), ck.Value) {
		c.fail(w, r, nil, http.StatusForbidden, "This form was refused: its security token is missing or out of date. Reload the sign-in page and try again.")
		return
	}
	d := loginData{Next: safeNext(r.PostFormValue("next")), Username: r.PostFormValue("username")}
	if c.cfg.LoginAllowed != nil && !c.cfg.LoginAllowed(r) {
		d.Error = "Too many sign-in attempts from this address. Wait a minute and try again."
		c.showLogin(w, r, http.StatusTooManyRequests, d)
		return
	}
	ctx := r.Context()
	device := ""
	if dk, err := r.Cookie(cookieDevice); err == nil {
		if id, ok := replicaOf(dk.Value); ok {
			device = id.String()
		}
	}
	if device == "" {
		device = crdt.NewReplicaID().String()
	}
	tr, err := c.cfg.Auth.Login(ctx, d.Username, r.PostFormValue("password"), device, "Console (web browser)")
	if errors.Is(err, identity.ErrDeviceMismatch) || errors.Is(err, identity.ErrDeviceRevoked) {
		// Another user's browser, or a console session an admin revoked:
		// this sign-in gets a device of its own.
		device = crdt.NewReplicaID().String()
		tr, err = c.cfg.Auth.Login(ctx, d.Username, r.PostFormValue("password"), device, "Console (web browser)")
	}
	if err != nil {
		status, msg := loginRefusal(err)
		if msg == "" {
			c.failErr(w, r, nil, err)
			return
		}
		var le *identity.LockedError
		if errors.As(err, &le) {
			w.Header().Set("Retry-After", strconv.Itoa(int(le.RetryAfter.Seconds()+0.999)))
		}
		d.Error = msg
		c.showLogin(w, r, status, d)
		return
	}
	http.SetCookie(w, c.cookie(r, cookieDevice, device, 400*24*3600))
	http.SetCookie(w, c.cookie(r, cookieLogin, "", -1))
	if !identity.RoleAtLeast(tr.User.Role, api.RoleCoordinator) {
		c.render(w, r, http.StatusForbidden, "refused", page{Title: "Console is for coordinators and admins", Data: tr.User.Name})
		return
	}
	cl, err := c.cfg.Auth.Verify(tr.AccessToken)
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	u, err := c.cfg.Auth.User(ctx, tr.User.ID)
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	tok, _, err := c.ss.create(ctx, c.cfg.Now(), cl, u)
	if err != nil {
		c.failErr(w, r, nil, err)
		return
	}
	http.SetCookie(w, c.cookie(r, cookieSession, tok, 0))
	next := d.Next
	if next == "/console/" && len(u.Teams) == 1 {
		next = "/console/teams/" + url.PathEscape(u.Teams[0])
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session and revokes the browser's device: a console
// device is only this sign-in's, and a revoked one does not count against
// the user's device limit (the next sign-in on this browser registers a
// new one).
func (c *Console) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.ss.drop(r.Context(), v.token)
	if _, err := c.cfg.Auth.RevokeDevice(r.Context(), v.caller.Replica); err != nil {
		c.log.Warn("console: revoke the signed-out browser's device", "device", v.caller.Replica.String(), "err", err)
	}
	http.SetCookie(w, c.cookie(r, cookieSession, "", -1))
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// loginRefusal is what the sign-in page says for an auth error, or "" for
// an error that is the server's fault.
func loginRefusal(err error) (int, string) {
	var le *identity.LockedError
	switch {
	case errors.Is(err, identity.ErrInvalidCredentials), errors.Is(err, identity.ErrUnauthorized):
		return http.StatusUnauthorized, "That username and password do not match."
	case errors.As(err, &le), errors.Is(err, identity.ErrAccountLocked):
		return http.StatusTooManyRequests, "This account is locked for a while after several failed sign-ins. Try again in a few minutes, or ask an admin to reset the password."
	case errors.Is(err, identity.ErrAccountDisabled):
		return http.StatusForbidden, "This account is disabled. Ask an admin if you need it back."
	case errors.Is(err, identity.ErrNoTeams):
		return http.StatusForbidden, "Your account is not in any team yet. Ask an admin to add you to one."
	case errors.Is(err, identity.ErrTooManyDevices):
		return http.StatusForbidden, "Your account has too many devices signed in. Ask an admin to revoke the ones you no longer use."
	case errors.Is(err, identity.ErrDemoAccount):
		return http.StatusForbidden, "Demo accounts can only sign in to a demo server."
	}
	return 0, ""
}
