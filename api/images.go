package api

import (
	"net/http"
	"time"

	"github.com/faas-platform/faas/image"
)

// ImageResponse is an image of the local store as clients see it.
type ImageResponse struct {
	ID         string      `json:"id"`
	Digest     string      `json:"digest"`
	Names      []string    `json:"names"`
	SizeBytes  int64       `json:"size_bytes"`
	Layers     []string    `json:"layers"`
	Config     imageConfig `json:"config"`
	CreatedAt  time.Time   `json:"created_at"`
	LastUsedAt time.Time   `json:"last_used_at"`
}

type imageConfig struct {
	Env        []string `json:"env"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

func toImageResponse(img image.Image) ImageResponse {
	names, layers, env := nonNil(img.Names), nonNil(img.Layers), nonNil(img.Config.Env)
	return ImageResponse{ID: img.Digest, Digest: img.Digest, Names: names, SizeBytes: img.Size, Layers: layers,
		Config:    imageConfig{Env: env, WorkingDir: img.Config.WorkingDir, User: img.Config.User, Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd},
		CreatedAt: img.CreatedAt, LastUsedAt: img.LastUsed}
}

// maxImageBytes bounds an imported archive.
const maxImageBytes = 8 << 30

func (s *Server) noImages(w http.ResponseWriter, r *http.Request) bool {
	if s.images == nil {
		s.writeError(w, r, newError(http.StatusNotImplemented, "not_available", "this server has no image store"))
		return true
	}
	return false
}

// importImage is POST /api/v1/images/import?name=N: the body is a docker-archive
// (docker save) or an OCI image layout tarball.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	if s.noImages(w, r) {
		return
	}
	body := http.MaxBytesReader(w, r.Body, maxImageBytes)
	imgs, err := s.images.Import(r.Context(), body, r.URL.Query().Get("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.engine.ImagesAdded()
	out := make([]ImageResponse, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toImageResponse(img))
	}
	writeJSON(w, http.StatusCreated, map[string]any{"images": out})
}

// pullRequest is the body of POST /api/v1/images/pull.
type pullRequest struct {
	Ref string `json:"ref"`
}

func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) {
	if s.noImages(w, r) {
		return
	}
	var body pullRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Ref == "" {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "ref is required, e.g. python:3.12-slim"))
		return
	}
	img, err := s.images.Pull(r.Context(), body.Ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.engine.ImagesAdded()
	writeJSON(w, http.StatusCreated, toImageResponse(img))
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	if s.noImages(w, r) {
		return
	}
	list := s.images.List()
	out := make([]ImageResponse, 0, len(list))
	for _, img := range list {
		out = append(out, toImageResponse(img))
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": out})
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	if s.noImages(w, r) {
		return
	}
	img, err := s.images.Get(r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toImageResponse(img))
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	if s.noImages(w, r) {
		return
	}
	ref := r.PathValue("ref")
	s.engine.FreeImages(r.Context()) // idle warm sandboxes do not keep an image
	if err := s.images.Remove(ref); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ref": ref, "deleted": true})
}
