package api

// ProblemMsgpackContentType is the media type of a Problem encoded in
// msgpack, which the sync route returns to clients that sent msgpack. Every
// other route returns problems as ProblemContentType (JSON).
const ProblemMsgpackContentType = "application/problem+msgpack"

// Roles a user can hold. A role's rights include those of the roles above it
// in this list.
const (
	RoleLinkWorker  = "link_worker" // reads and writes its own teams' records
	RoleCoordinator = "coordinator" // also reviews, resolves conflicts, exports
	RoleAdmin       = "admin"       // also manages users, teams, devices, erasure
)

// LoginRequest is the JSON body of POST /v1/auth/login. DeviceID is the
// replica ID of the device, 32 hex digits; the tokens returned are bound to
// it.
type LoginRequest struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	DeviceID   string `json:"device_id"`
	DeviceName string `json:"device_name"`
}

// RefreshRequest is the JSON body of POST /v1/auth/refresh.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
	DeviceID     string `json:"device_id"`
}

// TokenResponse is the JSON reply to a login or refresh. The refresh token
// is single-use: each refresh returns a new one, and presenting a spent one
// revokes the device's whole chain (CodeRefreshReused).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"` // "Bearer"
	ExpiresIn    int    `json:"expires_in"` // access token lifetime, seconds
	RefreshToken string `json:"refresh_token"`
	User         User   `json:"user"`
}

// User describes a user account as the API shows it.
type User struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Role  string   `json:"role"`
	Teams []string `json:"teams"`
}
