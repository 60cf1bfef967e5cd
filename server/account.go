package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// PasswordChange is the body of POST /v1/auth/password: the user changes
// their own password.
type PasswordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// logout ends the calling device's session: its refresh chain and access
// tokens (POST /v1/auth/logout).
func (s *Server) logout(c echo.Context) error {
	if err := s.auth.Logout(c.Request().Context(), claimsOf(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// changePassword lets the token's user change their own password; the
// sessions of their other devices end (POST /v1/auth/password).
func (s *Server) changePassword(c echo.Context) error {
	var req PasswordChange
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if err := s.auth.ChangePassword(c.Request().Context(), claimsOf(c), req.CurrentPassword, req.NewPassword); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
