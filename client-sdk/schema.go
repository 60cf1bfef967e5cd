package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/schema"
)

// FetchSchema gets the server's active schema (extensions included) from
// GET /v1/schema. Pass the ETag of the copy you hold ("" for none): when
// the server's schema is still that one it answers 304 and FetchSchema
// returns a nil schema with the same ETag. Otherwise it returns the parsed
// schema and its new ETag. An expired access token is refreshed once, as
// for a sync.
func (r *Replica) FetchSchema(ctx context.Context, etag string) (*schema.Schema, string, error) {
	if r.server == "" {
		return nil, "", ErrNoServer
	}
	for attempt := 0; ; attempt++ {
		token, err := r.accessToken()
		if err != nil {
			return nil, "", err
		}
		sc, tag, err := r.getSchema(ctx, token, etag)
		var p *api.Problem
		if attempt == 0 && errors.As(err, &p) && p.Status == http.StatusUnauthorized {
			if err := r.refresh(ctx, token); err != nil {
				return nil, "", err
			}
			continue
		}
		return sc, tag, err
	}
}

func (r *Replica) getSchema(ctx context.Context, token, etag string) (*schema.Schema, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.server+"/v1/schema", nil)
	if err != nil {
		return nil, "", fmt.Errorf("client: schema request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("client: schema: %w", err)
	}
	defer resp.Body.Close()
	b, err := readBounded(resp.Body, schema.MaxFileSize)
	if err != nil {
		return nil, "", fmt.Errorf("client: schema: read reply: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, nil
	case http.StatusOK:
	default:
		return nil, "", fmt.Errorf("client: schema: %w", decodeProblem(resp, b))
	}
	sc, err := schema.Parse(b)
	if err != nil {
		return nil, "", fmt.Errorf("client: schema: %w", err)
	}
	return sc, resp.Header.Get("ETag"), nil
}
