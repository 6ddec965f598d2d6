package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/image"
	"github.com/faas-platform/faas/sandbox"
	"github.com/faas-platform/faas/store"
)

// apiError is an error with the status and code the client sees.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration
	paths      []string // the conflicting paths of a merge
}

func (e *apiError) Error() string { return e.msg }

func newError(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// errorBody is every error response's JSON body.
type errorBody struct {
	Error string   `json:"error"`
	Code  string   `json:"code"`
	Paths []string `json:"paths,omitempty"`
}

// toAPIError is the one place where errors become HTTP statuses. The client gets a
// message meant for it; internal causes only reach the log.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var ce *engine.ConflictError
	if errors.As(err, &ce) {
		return &apiError{status: http.StatusConflict, code: "merge_conflict", msg: ce.Error(), paths: ce.Paths}
	}
	switch {
	case errors.Is(err, image.ErrNotFound):
		return newError(http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, image.ErrInvalid):
		return newError(http.StatusBadRequest, "invalid_image", err.Error())
	case errors.Is(err, image.ErrInUse):
		return newError(http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, image.ErrUnreachable):
		return newError(http.StatusBadGateway, "registry_unreachable", err.Error())
	case errors.Is(err, engine.ErrInvalid):
		return newError(http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, engine.ErrUnavailable):
		return newError(http.StatusNotImplemented, "not_available", err.Error())
	case errors.Is(err, engine.ErrNotFound):
		return newError(http.StatusNotFound, "not_found", err.Error()) // engine messages are for clients
	case errors.Is(err, store.ErrNotFound):
		return newError(http.StatusNotFound, "not_found", "not found")
	case errors.Is(err, store.ErrConflict):
		return newError(http.StatusConflict, "conflict", "already exists")
	case errors.Is(err, engine.ErrNoSpace):
		return newError(http.StatusInsufficientStorage, "insufficient_storage", err.Error())
	case errors.Is(err, engine.ErrUnprocessable):
		return newError(http.StatusUnprocessableEntity, "unprocessable", err.Error())
	case errors.Is(err, engine.ErrConflict):
		return newError(http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, engine.ErrUnreachable):
		return newError(http.StatusBadGateway, "unreachable", err.Error())
	case errors.Is(err, engine.ErrBroken):
		return newError(http.StatusConflict, "snapshot_broken", err.Error())
	case errors.Is(err, engine.ErrQuota):
		return &apiError{status: http.StatusTooManyRequests, code: "quota_exceeded", msg: err.Error(), retryAfter: time.Second}
	case errors.Is(err, engine.ErrBusy):
		return &apiError{status: http.StatusServiceUnavailable, code: "busy", msg: err.Error(), retryAfter: time.Second}
	case errors.Is(err, sandbox.ErrUnavailable):
		return newError(http.StatusServiceUnavailable, "runtime_unavailable", "the sandbox runtime is unavailable on this server")
	}
	return newError(http.StatusInternalServerError, "internal", "internal server error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError answers with err mapped to a status; server faults are logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away (while its sandbox booted, say): nobody reads the
		// answer, and nothing failed on this side.
		s.log.Debug("client went away", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, statusClientClosed, errorBody{Error: "the client closed the request", Code: "client_closed"})
		return
	}
	ae := toAPIError(err)
	if ae.status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", ae.status, "err", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", ae.status, "err", err)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, ae.status, errorBody{Error: ae.msg, Code: ae.code, Paths: ae.paths})
}

// statusClientClosed is the status logged for a request its client abandoned
// (nginx's 499; no client sees it).
const statusClientClosed = 499

// nonNil makes a nil list an empty one (a JSON array, not null).
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
