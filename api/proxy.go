package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/store"
)

// Exposed ports are reached through this server, never through a host port: by
// path, /p/{instance}/{name}/..., or by host name, {name}-{instance}.{domain}
// (Config.ExposeDomain). The proxy reaches the port through a tunnel of the
// instance's agent (the sandbox has no network). A port not made public needs the
// owner's API key (header, or the api_key query parameter, which is not passed on).

// exposeURLs are where an exposed port is reached.
func (s *Server) exposeURLs(r *http.Request, id string, ex engine.Exposure) exposeResponse {
	base := s.publicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	out := exposeResponse{Name: ex.Name, Port: ex.Port, Public: ex.Public, URL: strings.TrimSuffix(base, "/") + pathPrefix(id, ex)}
	if s.exposeDomain != "" {
		scheme, rest, _ := strings.Cut(base, "://")
		_, port, _ := strings.Cut(strings.TrimPrefix(rest, hostOnly(rest)), ":")
		host := ex.Name + "-" + id + "." + s.exposeDomain
		if port != "" {
			host += ":" + port
		}
		out.HostURL = scheme + "://" + host + "/"
	}
	return out
}

// proxyByHost serves requests whose Host is {name}-{instance}.{domain}; it reports
// false for any other host.
func (s *Server) proxyByHost(w http.ResponseWriter, r *http.Request) bool {
	if s.exposeDomain == "" {
		return false
	}
	host := strings.ToLower(hostOnly(r.Host))
	sub, ok := strings.CutSuffix(host, "."+s.exposeDomain)
	if !ok {
		return false
	}
	name, id, ok := strings.Cut(sub, "-")
	if !ok || name == "" || id == "" {
		return false
	}
	s.proxyTo(w, r, id, name, r.URL.Path)
	return true
}

func (s *Server) proxyPath(w http.ResponseWriter, r *http.Request) {
	s.proxyTo(w, r, r.PathValue("id"), r.PathValue("name"), "/"+r.PathValue("rest"))
}

func (s *Server) proxyTo(w http.ResponseWriter, r *http.Request, id, name, rest string) {
	ex, owner, err := s.engine.Exposure(id, name)
	if err != nil {
		s.writeError(w, r, newError(http.StatusNotFound, "not_found", fmt.Sprintf("nothing is exposed as %q on instance %q", name, id)))
		return
	}
	if !ex.Public {
		key := keyFromRequest(r)
		if key == "" {
			key = strings.TrimSpace(r.URL.Query().Get("api_key"))
		}
		// Without the owner's key, as if nothing were there (the same answer
		// whether or not it is).
		hidden := newError(http.StatusNotFound, "not_found", fmt.Sprintf("nothing is exposed as %q on instance %q to this request (a port that is not public needs its owner's API key: Authorization: Bearer, x-api-key, or ?api_key=)", name, id))
		if key == "" {
			s.writeError(w, r, hidden)
			return
		}
		k, err := s.store.KeyByHash(r.Context(), HashKey(key))
		if err != nil || k.RevokedAt != nil || k.Account != owner || !(Principal{Scopes: k.Scopes}).Can(ScopeInstances) {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				s.writeError(w, r, err)
				return
			}
			s.writeError(w, r, hidden)
			return
		}
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "127.0.0.1:"+fmt.Sprint(ex.Port)
			if ex.KeepPrefix {
				pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
			} else {
				pr.Out.URL.Path, pr.Out.URL.RawPath = rest, ""
			}
			q := pr.Out.URL.Query()
			if q.Has("api_key") {
				q.Del("api_key")
				pr.Out.URL.RawQuery = q.Encode()
			}
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("X-Api-Key")
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Prefix", strings.TrimSuffix(pr.In.URL.Path, rest))
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				t, err := s.engine.DialInstance(ctx, "", id, ex.Port)
				if err != nil {
					return nil, err
				}
				return tunnelConn{t}, nil
			},
			DisableKeepAlives:     true,
			ResponseHeaderTimeout: 5 * time.Minute,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.writeError(w, r, newError(http.StatusBadGateway, "unreachable", fmt.Sprintf("instance %s port %d did not answer: %v", id, ex.Port, err)))
		},
	}
	rp.ServeHTTP(w, r)
}

// tunnelConn is a tunnel as a net.Conn (for http.Transport).
type tunnelConn struct{ *agent.Tunnel }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "faas-tunnel" }
func (tunnelAddr) String() string  { return "instance" }

func (tunnelConn) LocalAddr() net.Addr                { return tunnelAddr{} }
func (tunnelConn) RemoteAddr() net.Addr               { return tunnelAddr{} }
func (tunnelConn) SetDeadline(t time.Time) error      { return nil }
func (tunnelConn) SetReadDeadline(t time.Time) error  { return nil }
func (tunnelConn) SetWriteDeadline(t time.Time) error { return nil }

// pathPrefix is the path an instance's exposure is proxied under.
func pathPrefix(id string, ex engine.Exposure) string { return "/p/" + id + "/" + ex.Name + "/" }

// devServer is POST /api/v1/instances/{id}/{name} for a development server.
func (s *Server) devServer(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		ex, err := s.engine.StartDevServer(r.Context(), principalFrom(r.Context()).Account, id, name,
			func(ex engine.Exposure) string { return pathPrefix(id, ex) })
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.exposeURLs(r, id, ex))
	}
}
