package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

// HostImage is the default image: the host's /usr read-only with a generated /etc.
const HostImage = "host"

// ImageConfig is what of an image's configuration executions honour.
type ImageConfig struct {
	Env        []string // KEY=value, before the request's own
	WorkingDir string   // the default working directory
	User       string   // "uid[:gid]" or a name; root and names are run as the sandbox user
}

// ImageSource provides images other than HostImage (the image store).
type ImageSource interface {
	// Resolve finds an image for a sandbox and keeps it on disk until release is
	// called: its unpacked root filesystem and its configuration. An unknown
	// image is an error wrapping ErrNotFound.
	Resolve(ref string) (rootFS string, cfg ImageConfig, release func(), err error)
}

// imageFor fills in a request's image: the one asked for, else the one the
// configuration maps its language to, else the host image.
func (e *Engine) imageFor(r *Request) {
	if strings.TrimSpace(r.Image) != "" {
		r.Image = strings.TrimSpace(r.Image)
		return
	}
	lang := languages[strings.ToLower(strings.TrimSpace(r.Language))]
	if img := e.cfg.LanguageImages[lang]; img != "" {
		r.Image = img
		return
	}
	r.Image = HostImage
}

// normalize validates a request, with the engine's image mapping and limits.
func (e *Engine) normalize(r *Request) error {
	e.imageFor(r)
	if err := r.normalize(e.cfg.Limits); err != nil {
		return err
	}
	return e.checkImage(r.Image)
}

// checkImage refuses an image this server cannot run.
func (e *Engine) checkImage(ref string) error {
	if ref == HostImage {
		return nil
	}
	if e.cfg.Images == nil {
		return unavailable(fmt.Sprintf("image %q is not available: this server runs the host image only", ref))
	}
	if len(ref) > 256 || strings.ContainsAny(ref, " \t\n\x00") {
		return invalid("image must be an image reference such as python:3.12-slim")
	}
	return nil
}

// withImage resolves spec's image for a sandbox about to be created: it fills in
// the root filesystem and returns the image's configuration and its release.
func (e *Engine) withImage(spec *sandbox.Spec) (ImageConfig, func(), error) {
	if spec.Image == "" || spec.Image == HostImage {
		return ImageConfig{}, func() {}, nil
	}
	if e.cfg.Images == nil {
		return ImageConfig{}, nil, unavailable(fmt.Sprintf("image %q is not available: this server runs the host image only", spec.Image))
	}
	root, cfg, release, err := e.cfg.Images.Resolve(spec.Image)
	if err != nil {
		return ImageConfig{}, nil, err
	}
	spec.RootFS = root
	var once sync.Once
	return cfg, func() { once.Do(release) }, nil
}

// userOf is the uid and gid an image's User runs as: a numeric non-root user as
// given, anything else as the sandbox user.
func userOf(cfg ImageConfig) (int, int) {
	u, g, _ := strings.Cut(cfg.User, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid <= 0 {
		return UserUID, UserGID
	}
	gid, err := strconv.Atoi(g)
	if err != nil || gid <= 0 {
		gid = uid
	}
	return uid, gid
}

// FreeImages destroys the idle warm sandboxes and the stocked sandboxes that
// hold images other than the host image, so that those images can be removed; it
// returns once they are gone.
func (e *Engine) FreeImages(ctx context.Context) {
	e.stock.dropImages(ctx)
	e.pool.evictImages(ctx)
}

// ImagesAdded tells the engine that images were pulled or imported: a stock of
// an image that could not be resolved tries again now.
func (e *Engine) ImagesAdded() {
	e.stock.mu.Lock()
	for _, sh := range e.stock.shelves {
		if sh.failing != "" {
			sh.retryAt = time.Time{}
		}
	}
	e.stock.mu.Unlock()
	e.stock.signal()
}
