// Package testimage builds small OCI images for tests and benchmarks, with no
// registry: the host's static busybox as /bin/busybox with /bin/sh and friends
// linked to it, an /app working directory, and an environment variable.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Busybox is the path of the static busybox the images are built around
// (Debian's busybox-static).
const Busybox = "/usr/bin/busybox"

// Greeting is the value of GREETING in the images' environment.
const Greeting = "hello from the image"

// DockerArchive builds a docker-archive (what `docker save` writes) of the image,
// tagged tag, with extra files (path -> content) added to its layer.
func DockerArchive(tag string, extra map[string]string) ([]byte, error) {
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return nil, fmt.Errorf("reading %s (install busybox-static): %w", Busybox, err)
	}
	var lb bytes.Buffer
	tw := tar.NewWriter(&lb)
	add := func(h *tar.Header, body []byte) error {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	for _, d := range []string{"bin/", "app/", "etc/"} {
		if err := add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}, nil); err != nil {
			return nil, err
		}
	}
	if err := add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb); err != nil {
		return nil, err
	}
	for _, l := range []string{"sh", "echo", "cat", "pwd", "ls", "env", "id", "test"} {
		if err := add(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
			return nil, err
		}
	}
	if err := add(&tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644, Size: 14}, []byte("ID=faas-test\n\n")); err != nil {
		return nil, err
	}
	for p, content := range extra {
		if err := add(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}, []byte(content)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := lb.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg := cf.Config
	cfg.Env = []string{"PATH=/bin", "GREETING=" + Greeting}
	cfg.WorkingDir = "/app"
	cfg.Cmd = []string{"/bin/sh"}
	if img, err = mutate.Config(img, cfg); err != nil {
		return nil, err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := tarball.Write(ref, img, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
