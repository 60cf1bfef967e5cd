package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of every JSON route of the server
// (api/openapi.yaml), served at GET /v1/openapi.yaml. The e2e tests check
// every exchange they make against it.
//
//go:embed openapi.yaml
var OpenAPI []byte

// OpenAPIContentType is the media type GET /v1/openapi.yaml is served with.
const OpenAPIContentType = "application/yaml"
