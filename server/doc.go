// Package server is Doorstep's HTTP front: an echo application that
// authenticates requests with the auth package's JWTs, checks roles and team
// scope, bounds every input (body sizes, decompressed sizes, msgpack element
// counts and nesting, per-device request rates, connection timeouts), and
// hands typed calls to the sync engine. Errors leave as RFC 9457 problem
// details carrying the stable codes of package api (msgpack problems on the
// sync route).
//
// Every authenticated request carries an auth.Actor in its context (who,
// with which narrowed role and teams), which scopes admin changes in auth and
// signs the audit entries the server records: resolutions, erasures,
// quarantine reapplies, review reads of a record (before it is sent: a read
// that cannot be recorded is refused) and one line per admin request.
//
// It contains no sync logic: merging, ordering, scope of records and
// storage belong to package sync. The caller identity passed to the engine
// comes only from the verified access token, never from a request body.
//
// Routes (docs/PROTOCOL.md has the full contract, api/openapi.yaml
// describes each one):
//
//	GET  /healthz, /readyz, /metrics, /v1/openapi.yaml       no auth
//	GET  /v1/schema                                          any role, JSON; ETag / If-None-Match
//	POST /v1/auth/login, /v1/auth/refresh                    no auth, JSON
//	POST /v1/auth/exchange                                   no auth, JSON; only with Config.External
//	POST /v1/sync                                            any role, msgpack
//	POST /v1/auth/logout, /v1/auth/password                  any role (the token's own device/user), JSON
//	/v1/admin/...                                            admin, scoped to the admin's teams (auth's admin model), JSON; every request audited
//	/v1/teams/:team/...                                      coordinator or admin of :team, JSON
package server
