package api

import (
	"fmt"
	"net/http"
	"time"
)

// Code is a stable, machine-readable error code. Codes never change meaning;
// new ones may be added. Clients branch on codes, never on messages.
type Code string

// Request-level codes, each with the HTTP status it travels with.
const (
	CodeBadRequest          Code = "bad_request"
	CodeMalformedBody       Code = "malformed_body"
	CodeBodyTooLarge        Code = "body_too_large"
	CodeUnsupportedMedia    Code = "unsupported_media_type"
	CodeUnsupportedProtocol Code = "unsupported_protocol"
	CodeUnauthorized        Code = "unauthorized"
	CodeTokenExpired        Code = "token_expired"
	CodeInvalidCredentials  Code = "invalid_credentials"
	CodeRefreshReused       Code = "refresh_token_reused"
	CodeDeviceRevoked       Code = "device_revoked"
	CodeDeviceMismatch      Code = "device_mismatch"
	CodeForbidden           Code = "forbidden"
	CodeNotFound            Code = "not_found"
	CodeConflict            Code = "conflict"
	CodeRateLimited         Code = "rate_limited"
	CodeInternal            Code = "internal"
	CodeUnavailable         Code = "unavailable"
	CodeMethodNotAllowed    Code = "method_not_allowed"
	// CodeRequestTimeout: the request body arrived slower than the
	// server's minimum rate, or not within the read timeout.
	CodeRequestTimeout Code = "request_timeout"
)

// Account codes (request-level): the account lifecycle and login rules.
const (
	CodeAccountDisabled Code = "account_disabled" // the user is disabled: login, refresh and access tokens refused
	CodeAccountLocked   Code = "account_locked"   // too many failed logins for this username; see Retry-After
	CodeWeakPassword    Code = "weak_password"    // a new password is too short, too long, common or the username
	CodeNoTeams         Code = "no_teams"         // the user is in no team and cannot get a token
	CodeTooManyDevices  Code = "too_many_devices" // a login from one more device than the per-user bound
	CodeDemoAccount     Code = "demo_account"     // a --demo user logging in to a server not in demo mode
	CodeWrongPassword   Code = "wrong_password"   // the current password given to change one's own is wrong
)

// Change- and op-level codes, carried in ChangeResult and OpResult.
const (
	CodeSeqGap        Code = "seq_gap"        // change: a previous seq is missing; see Expected
	CodeInvalidOp     Code = "invalid_op"     // op: malformed (no id, bad kind, pred not older)
	CodeInvalidValue  Code = "invalid_value"  // op: fails schema validation; quarantined
	CodeUnknownField  Code = "unknown_field"  // op: field or collection not in the schema; quarantined
	CodeForbiddenTeam Code = "forbidden_team" // op: record of a team the caller is not in
	CodeWrongTeam     Code = "wrong_team"     // op: record exists under another team
	CodeUnknownPred   Code = "unknown_pred"   // op: names an op the server does not have
	CodeClockSkew     Code = "clock_skew"     // op: stamped too far in the future; quarantined
	CodeRecordErased  Code = "record_erased"  // op: the record was erased; refused
	CodeWrongReplica  Code = "wrong_replica"  // op: id names another replica than the pusher's
	CodeOpIDReused    Code = "op_id_reused"   // op: the server holds another op with this id; refused
	// CodeInvalidRecordID: the op's record ID is not 1–64 ASCII letters,
	// digits, '-', '_' or '.' (crdt.ValidateRecordID); refused.
	CodeInvalidRecordID Code = "invalid_record_id"
	// CodeRecordTooLarge: merging the op would grow its record, or one
	// field of it, past the server's size bound; refused, not stored.
	CodeRecordTooLarge Code = "record_too_large"
	// CodeQuarantineFull: the op would have been quarantined, but the
	// pushing device's or the team's quarantine quota is used up; refused,
	// not stored.
	CodeQuarantineFull Code = "quarantine_full"
	// CodeResolveForbidden: op: settles a conflict on a clinical field
	// (its pred covers every concurrent value) but the pusher's role is not
	// among those the schema lets settle that field; refused, kept in the
	// quarantine, the conflict stays for someone allowed.
	CodeResolveForbidden Code = "resolve_forbidden"
	// CodeConflictInReview: op: an ordinary write to a clinical field in
	// conflict whose pred names another author's concurrent value, so
	// merging it would take that value out of the review; quarantined (an
	// admin may re-apply it once the conflict is settled, when it only adds
	// a value).
	CodeConflictInReview Code = "conflict_in_review"
)

// Attachment codes (request-level), on the blob routes (see api/blob.go).
const (
	CodeBlobTooLarge    Code = "blob_too_large"         // the file exceeds the per-file limit
	CodeBlobQuota       Code = "blob_quota_exceeded"    // the team's attachment quota is used up
	CodeUploadOffset    Code = "upload_offset_mismatch" // Upload-Offset is not what the server holds; the reply's Upload-Offset header says what is
	CodeBlobHash        Code = "blob_hash_mismatch"     // the complete bytes do not hash to the name; the upload was discarded, start again
	CodeBlobTypeRefused Code = "blob_type_refused"      // the bytes are not JPEG, PNG, HEIC or PDF (executables always refused); discarded
	CodeUploadBusy      Code = "upload_busy"            // another request is still writing this upload; retry shortly
	// CodeBlobRecordErased: the record the upload names (Doorstep-Record)
	// was erased on the server; nothing is stored. The device deletes its
	// copy of the file for that record.
	CodeBlobRecordErased Code = "blob_record_erased"
)

var statusByCode = map[Code]int{
	CodeBlobTooLarge:        http.StatusRequestEntityTooLarge,
	CodeBlobQuota:           http.StatusRequestEntityTooLarge,
	CodeUploadOffset:        http.StatusConflict,
	CodeBlobHash:            http.StatusUnprocessableEntity,
	CodeBlobTypeRefused:     http.StatusUnsupportedMediaType,
	CodeUploadBusy:          http.StatusConflict,
	CodeBlobRecordErased:    http.StatusGone,
	CodeBadRequest:          http.StatusBadRequest,
	CodeMalformedBody:       http.StatusBadRequest,
	CodeBodyTooLarge:        http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:    http.StatusUnsupportedMediaType,
	CodeUnsupportedProtocol: http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeTokenExpired:        http.StatusUnauthorized,
	CodeInvalidCredentials:  http.StatusUnauthorized,
	CodeRefreshReused:       http.StatusUnauthorized,
	CodeDeviceRevoked:       http.StatusUnauthorized,
	CodeDeviceMismatch:      http.StatusForbidden,
	CodeForbidden:           http.StatusForbidden,
	CodeNotFound:            http.StatusNotFound,
	CodeConflict:            http.StatusConflict,
	CodeRateLimited:         http.StatusTooManyRequests,
	CodeInternal:            http.StatusInternalServerError,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodeRequestTimeout:      http.StatusRequestTimeout,
	CodeAccountDisabled:     http.StatusUnauthorized,
	CodeAccountLocked:       http.StatusTooManyRequests,
	CodeWeakPassword:        http.StatusBadRequest,
	CodeNoTeams:             http.StatusForbidden,
	CodeTooManyDevices:      http.StatusForbidden,
	CodeDemoAccount:         http.StatusForbidden,
	CodeWrongPassword:       http.StatusForbidden,
}

// Status returns the HTTP status a request-level code travels with, or 500
// for a code that is not request-level.
func (c Code) Status() int {
	if s, ok := statusByCode[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Problem is an error reply: RFC 9457 problem details as
// application/problem+json, and the same fields in msgpack on the sync
// route. Code is the stable code; Type is "urn:doorstep:error:" + Code.
type Problem struct {
	Type   string `json:"type" msgpack:"type"`
	Title  string `json:"title" msgpack:"title"`
	Status int    `json:"status" msgpack:"status"`
	Detail string `json:"detail,omitempty" msgpack:"detail,omitempty"`
	Code   Code   `json:"code" msgpack:"code"`
	// RetryAfterMillis, when set, is how long the client should wait
	// before trying again, in milliseconds: sent with rate_limited (and
	// unavailable when the server knows). The HTTP Retry-After header
	// carries the same wait rounded up to whole seconds.
	RetryAfterMillis int64 `json:"retry_after_ms,omitempty" msgpack:"retry_after_ms,omitempty"`
}

// RetryAfter returns the wait the server asked for, or 0.
func (p *Problem) RetryAfter() time.Duration {
	return time.Duration(p.RetryAfterMillis) * time.Millisecond
}

// ProblemContentType is the media type of JSON problem details.
const ProblemContentType = "application/problem+json"

// NewProblem returns the problem for code with a human-readable detail.
func NewProblem(code Code, detail string) *Problem {
	s := code.Status()
	return &Problem{Type: "urn:doorstep:error:" + string(code), Title: http.StatusText(s), Status: s, Detail: detail, Code: code}
}

// Error makes a Problem usable as an error, e.g. by the client SDK.
func (p *Problem) Error() string { return fmt.Sprintf("%s (%d): %s", p.Code, p.Status, p.Detail) }
