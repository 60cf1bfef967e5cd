package server

import (
	"net/http"

	"github.com/doorstep-health/doorstep/api"
	"github.com/labstack/echo/v4"
)

// serveOpenAPI serves GET /v1/openapi.yaml: the embedded api.OpenAPI. It
// is public (the same text ships in the repository), like /healthz.
func serveOpenAPI(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, api.OpenAPIContentType, api.OpenAPI)
}
