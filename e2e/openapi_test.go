package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	gosync "sync"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/klauspost/compress/zstd"
)

// The e2e servers are wrapped in openAPIChecked: every request a test makes
// and every response the server gives is checked against api/openapi.yaml
// with kin-openapi, whoever the client is (the harness, the SDK, a proxy).
//
//   - A route or method the description lacks fails the test, unless the
//     server answered 404/405 (tests probing unknown paths).
//   - A response that does not match the description of its status (or the
//     default problem response) fails the test.
//   - A request the description calls invalid must be refused with a 4xx:
//     tests send bad requests on purpose, and the server must not accept
//     what the contract says is wrong.
//
// JSON bodies are checked; msgpack bodies (POST /v1/sync) are checked for
// route, status and media type only (their structure is the msgpack
// contract of docs/PROTOCOL.md and the vectors in api/testdata/).

var openAPI = gosync.OnceValues(func() (routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	return legacy.NewRouter(doc)
})

// maxCheckedBody is the most of a body the checker copies; longer JSON
// bodies (tests of the size limits) are not schema-checked.
const maxCheckedBody = 1 << 20

// openAPIChecked wraps h so that every exchange is checked against the
// OpenAPI description, reporting mismatches with t.Errorf.
func openAPIChecked(t testing.TB, h http.Handler) http.Handler {
	router, err := openAPI()
	if err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Copy a JSON request body (bounded) so that both the server and
		// the checker can read it; other bodies stream through untouched.
		var reqBody []byte
		checkReqBody := isJSON(r.Header.Get("Content-Type")) && r.Header.Get("Content-Encoding") == ""
		if checkReqBody && r.Body != nil {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxCheckedBody+1))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if len(b) > maxCheckedBody {
				checkReqBody = false
			}
			reqBody = b
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), r.Body))
		}
		rec := &teeWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if msg := checkExchange(router, r, reqBody, checkReqBody, rec); msg != "" {
			t.Errorf("OpenAPI: %s %s: %s", r.Method, r.URL.Path, msg)
		}
	})
}

// checkExchange returns what is wrong with one exchange, or "".
func checkExchange(router routers.Router, r *http.Request, reqBody []byte, checkReqBody bool, rec *teeWriter) string {
	route, params, err := router.FindRoute(r)
	if err != nil {
		if rec.status == http.StatusNotFound || rec.status == http.StatusMethodNotAllowed {
			return ""
		}
		return fmt.Sprintf("route not described (%v), server answered %d", err, rec.status)
	}
	vr := *r
	vr.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{
		Request: &vr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			ExcludeRequestBody: !checkReqBody,
			MultiError:         true,
			AuthenticationFunc: bearerPresent,
		},
	}
	ctx := context.Background()
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && rec.status < 400 {
		return fmt.Sprintf("the server answered %d to a request the description calls invalid: %v", rec.status, reqErr)
	}
	body, ok := rec.body()
	if !ok {
		return "" // cut short or too long to check
	}
	ct := rec.Header().Get("Content-Type")
	in.Options = &openapi3filter.Options{IncludeResponseStatus: false, MultiError: true, ExcludeResponseBody: !isJSON(ct) || len(body) > maxCheckedBody}
	if r.Method == http.MethodHead {
		in.Options.ExcludeResponseBody = true
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.status, Header: rec.Header(),
		Body: io.NopCloser(bytes.NewReader(body)), Options: in.Options,
	})
	if err != nil {
		return fmt.Sprintf("response %d does not match the description: %v\nbody: %.400s", rec.status, err, body)
	}
	return ""
}

// bearerPresent is the checker's view of the bearer security scheme: a
// request to an authenticated route must carry "Authorization: Bearer ...".
// Whether the token is good is the server's business.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") && tok != "" {
		return nil
	}
	return errors.New("no bearer token")
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// teeWriter passes a response through and keeps a bounded copy of it.
type teeWriter struct {
	http.ResponseWriter
	status  int
	wrote   bool
	buf     bytes.Buffer
	tooLong bool
	decided bool // the first Write has looked at the Content-Type
	skip    bool // not JSON: nothing kept, nothing to check
}

func (w *teeWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if !w.decided {
		// Only JSON bodies are checked: a msgpack reply is not copied
		// (nor inflated again by body).
		w.decided, w.skip = true, !isJSON(w.Header().Get("Content-Type"))
	}
	w.wrote = true
	if w.skip {
		return w.ResponseWriter.Write(b)
	}
	if w.buf.Len()+len(b) <= maxCheckedBody {
		w.buf.Write(b)
	} else {
		w.tooLong = true
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes flushes through (echo's response flushes when asked).
func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer (deadlines).
func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// body returns the response body as sent, decoded if the server
// compressed it (gzip or zstd); ok is false when it is too long or does not decode.
func (w *teeWriter) body() ([]byte, bool) {
	if w.skip {
		return nil, true
	}
	if w.tooLong {
		return nil, false
	}
	var zr io.Reader
	switch w.Header().Get("Content-Encoding") {
	case "":
		return w.buf.Bytes(), true
	case "gzip":
		gr, err := gzip.NewReader(bytes.NewReader(w.buf.Bytes()))
		if err != nil {
			return nil, false
		}
		zr = gr
	case "zstd":
		zd, err := zstd.NewReader(bytes.NewReader(w.buf.Bytes()), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, false
		}
		defer zd.Close()
		zr = zd
	default:
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxCheckedBody+1))
	if err != nil || len(b) > maxCheckedBody {
		return nil, false
	}
	return b, true
}
