package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/doorstep-health/doorstep/web"
	"github.com/labstack/echo/v4"
)

// changedRecords answers GET /v1/teams/:team/records: records changed
// since a time (or after a cursor), attributed, paged by cursor.
func (s *Server) changedRecords(c echo.Context) error {
	f := dsync.ChangedFilter{Cursor: c.QueryParam("cursor"), Collection: c.QueryParam("collection"), Author: c.QueryParam("author")}
	if v := c.QueryParam("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return problemf(api.CodeBadRequest, "since must be an RFC 3339 time")
		}
		f.Since = t
	}
	limit, err := queryInt(c, "limit", 500, dsync.MaxPullLimit)
	if err != nil {
		return err
	}
	f.Limit = limit
	ctx := c.Request().Context()
	rows, next, err := s.engine.Changes(ctx, callerOf(c), c.Param("team"), f)
	if err != nil {
		return err
	}
	names := s.userNames(ctx)
	page := api.ChangedPage{Records: make([]api.ChangedRecord, 0, len(rows)), Next: next}
	for _, e := range rows {
		page.Records = append(page.Records, api.ChangedRecord{
			Team: e.Ref.Team, Collection: e.Ref.Collection, ID: e.Ref.ID, Author: e.Author, AuthorName: names[e.Author],
			Device: e.Device.String(), Time: e.DeviceTime.UTC(), Received: e.Received.UTC(), Reason: e.Reason,
		})
	}
	return c.JSON(http.StatusOK, page)
}

// searchPeople answers GET /v1/teams/:team/search?q=: people by name, NHS
// number or postcode, through the engine's index.
func (s *Server) searchPeople(c echo.Context) error {
	q := strings.TrimSpace(c.QueryParam("q"))
	if q == "" || len(q) > 200 {
		return problemf(api.CodeBadRequest, "q (1-200 bytes) is required")
	}
	recs, err := s.engine.Search(c.Request().Context(), callerOf(c), c.Param("team"), q, 0)
	if err != nil {
		return err
	}
	out := api.SearchReply{People: make([]api.PersonMatch, 0, len(recs))}
	for _, rec := range recs {
		out.People = append(out.People, web.PersonMatch(rec))
	}
	return c.JSON(http.StatusOK, out)
}

// outcomes answers GET /v1/teams/:team/outcomes (JSON, or CSV with
// ?format=csv).
func (s *Server) outcomes(c echo.Context) error {
	team := c.Param("team")
	o, err := s.console.Outcomes(c.Request().Context(), callerOf(c), team) // cached with the console's
	if err != nil {
		return err
	}
	switch c.QueryParam("format") {
	case "csv":
		w := c.Response()
		w.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		w.Header().Set(echo.HeaderContentDisposition, `attachment; filename="outcomes.csv"`)
		w.WriteHeader(http.StatusOK)
		return web.WriteOutcomesCSV(w, o)
	case "", "json":
		return c.JSON(http.StatusOK, web.OutcomesJSON(team, o))
	}
	return problemf(api.CodeBadRequest, "format must be json or csv")
}
