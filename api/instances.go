package api

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/faas-platform/faas/engine"
)

// InstanceResponse is an instance as clients see it.
type InstanceResponse struct {
	ID             string            `json:"id"`
	InstanceID     string            `json:"instance_id"`
	Name           string            `json:"name,omitempty"`
	Image          string            `json:"image"`
	Language       string            `json:"language"`
	State          string            `json:"state"`
	Status         string            `json:"status"`
	Error          string            `json:"error,omitempty"`
	Resources      instanceResources `json:"resources"`
	EnableSSH      bool              `json:"enable_ssh"`
	IdleTTLSeconds int64             `json:"idle_ttl_seconds,omitempty"`
	Exposures      []exposeResponse  `json:"exposures"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

type instanceResources struct {
	CPUCores float64 `json:"cpu_cores"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb"`
}

type exposeResponse struct {
	Name    string `json:"name"`
	Port    int    `json:"port"`
	Public  bool   `json:"public"`
	URL     string `json:"url"`
	HostURL string `json:"host_url"`
}

func (s *Server) toInstanceResponse(r *http.Request, in engine.InstanceInfo) InstanceResponse {
	out := InstanceResponse{ID: in.ID, InstanceID: in.ID, Name: in.Name, Image: in.Image, Language: in.Language, State: in.State,
		Status: in.State, Error: in.Error, EnableSSH: in.EnableSSH, IdleTTLSeconds: int64(in.IdleTTL / time.Second),
		Resources: instanceResources{CPUCores: float64(in.CPUMilli) / 1000, MemoryMB: in.MemoryMB, DiskMB: in.DiskMB},
		CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt, Exposures: []exposeResponse{}}
	for _, ex := range in.Exposures {
		out.Exposures = append(out.Exposures, s.exposeURLs(r, in.ID, ex))
	}
	return out
}

// createInstanceRequest is the body of POST /api/v1/instances.
type createInstanceRequest struct {
	Name       string    `json:"name"`
	Image      string    `json:"image"`
	Language   string    `json:"language"`
	SnapshotID string    `json:"snapshot_id"`
	Resources  resources `json:"resources"`
	CPUCores   *number   `json:"cpu_cores"`
	MemoryMB   *number   `json:"memory_mb"`
	DiskMB     *number   `json:"disk_mb"`
	EnableSSH  bool      `json:"enable_ssh"`
	Network    bool      `json:"network"`
	IdleTTL    *number   `json:"idle_ttl_seconds"`
	TTL        *number   `json:"ttl_seconds"`
}

func (s *Server) createInstance(w http.ResponseWriter, r *http.Request) {
	var body createInstanceRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principalFrom(r.Context())
	req := engine.InstanceRequest{Account: p.Account, KeyID: p.KeyID, Name: body.Name, Image: body.Image, Language: body.Language,
		SnapshotID: body.SnapshotID, EnableSSH: body.EnableSSH, Network: body.Network}
	mem := body.Resources.MemoryMB
	if mem == nil {
		mem = body.MemoryMB
	}
	cpu := body.Resources.CPUCores
	if cpu == nil {
		cpu = body.CPUCores
	}
	disk := body.Resources.DiskMB
	if disk == nil {
		disk = body.DiskMB
	}
	ttl := body.IdleTTL
	if ttl == nil {
		ttl = body.TTL
	}
	var err error
	var v int64
	if v, err = intField("memory_mb", mem); err != nil {
		s.writeError(w, r, err)
		return
	}
	req.MemoryMB = int(v)
	if v, err = intField("disk_mb", disk); err != nil {
		s.writeError(w, r, err)
		return
	}
	req.DiskMB = int(v)
	if v, err = intField("idle_ttl_seconds", ttl); err != nil {
		s.writeError(w, r, err)
		return
	}
	req.IdleTTL = time.Duration(v) * time.Second
	if cpu != nil {
		req.CPUCores = float64(*cpu)
		if req.CPUCores <= 0 {
			s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "cpu_cores must be a positive number"))
			return
		}
	}
	in, err := s.engine.CreateInstance(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.toInstanceResponse(r, in))
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	list := s.engine.Instances(principalFrom(r.Context()).Account)
	out := make([]InstanceResponse, 0, len(list))
	for _, in := range list {
		out = append(out, s.toInstanceResponse(r, in))
	}
	writeJSON(w, http.StatusOK, map[string]any{"instances": out})
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) {
	in, err := s.engine.Instance(principalFrom(r.Context()).Account, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toInstanceResponse(r, in))
}

func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.engine.DeleteInstance(r.Context(), principalFrom(r.Context()).Account, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// instanceAction is POST /api/v1/instances/{id}/{stop,start,pause,resume}.
func (s *Server) instanceAction(action func(e *engine.Engine, ctx context.Context, account, id string) (engine.InstanceInfo, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in, err := action(s.engine, r.Context(), principalFrom(r.Context()).Account, r.PathValue("id"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.toInstanceResponse(r, in))
	}
}

func (s *Server) execInstance(w http.ResponseWriter, r *http.Request) {
	var body ExecuteRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principalFrom(r.Context())
	req, err := body.toEngine(p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.engine.ExecInstance(r.Context(), p.Account, r.PathValue("id"), instanceExec(body, req))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toExecuteResponse(res))
}

// instanceExec is an execute request (as decoded, and converted) run in an
// instance: the language as given, so the instance's own applies by default.
func instanceExec(body ExecuteRequest, req engine.Request) engine.InstanceExecRequest {
	return engine.InstanceExecRequest{
		Command: req.Command, Code: req.Code, Language: body.Language, Stdin: req.Stdin, HasStdin: req.HasStdin, Env: req.Env,
		WorkingDir: req.WorkingDir, Timeout: req.Timeout, KeyID: req.KeyID,
	}
}

// sshInfo is GET /api/v1/instances/{id}/ssh: a new key pair authorized for the
// instance (the private key is shown this once and kept nowhere), and where to
// connect.
func (s *Server) sshInfo(w http.ResponseWriter, r *http.Request) {
	if s.ssh == nil {
		s.writeError(w, r, newError(http.StatusNotImplemented, "not_available", "this server runs no SSH gateway (set FAAS_SSH_PORT)"))
		return
	}
	id := r.PathValue("id")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " faas-" + id
	if _, err := s.engine.AddSSHKey(principalFrom(r.Context()).Account, id, authorized); err != nil {
		s.writeError(w, r, err)
		return
	}
	block, err := ssh.MarshalPrivateKey(priv, "faas "+id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	host := s.ssh.Host
	if host == "" {
		host = hostOnly(r.Host)
	}
	knownHost := fmt.Sprintf("[%s]:%d %s", host, s.ssh.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ssh.HostKey))))
	writeJSON(w, http.StatusOK, map[string]any{
		"instance_id": id, "host": host, "port": s.ssh.Port, "user": id,
		"private_key": string(pem.EncodeToMemory(block)), "public_key": authorized, "known_hosts": knownHost,
		"command": fmt.Sprintf("ssh -i KEYFILE -p %d %s@%s", s.ssh.Port, id, host),
	})
}

func hostOnly(hostport string) string {
	if h, _, ok := strings.Cut(hostport, ":"); ok && !strings.HasPrefix(hostport, "[") {
		return h
	}
	if strings.HasPrefix(hostport, "[") {
		if i := strings.Index(hostport, "]"); i > 0 {
			return hostport[1:i]
		}
	}
	return hostport
}

// exposeRequest is the body of POST /api/v1/instances/{id}/expose.
type exposeRequest struct {
	Name   string  `json:"name"`
	Port   *number `json:"port"`
	Public bool    `json:"public"`
}

func (s *Server) expose(w http.ResponseWriter, r *http.Request) {
	var body exposeRequest
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	port, err := intField("port", body.Port)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Name == "" {
		body.Name = "p" + strconv.FormatInt(port, 10)
	}
	id := r.PathValue("id")
	ex := engine.Exposure{Name: body.Name, Port: int(port), Public: body.Public}
	if _, err := s.engine.Expose(principalFrom(r.Context()).Account, id, ex); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.exposeURLs(r, id, ex))
}

func (s *Server) unexpose(w http.ResponseWriter, r *http.Request) {
	if err := s.engine.Unexpose(principalFrom(r.Context()).Account, r.PathValue("id"), r.PathValue("name")); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "deleted": true})
}

// File transfer limits.
const (
	maxUploadBytes = 1 << 30
	// fileRoots (below) are where files may be read, uploaded and synced to.
)

var fileRoots = []string{"/workspace", "/home/user", "/tmp"}

// checkFilePath cleans an absolute path and checks it lies under fileRoots.
func checkFilePath(p string) (string, error) {
	if p == "" || !path.IsAbs(p) || strings.ContainsRune(p, 0) {
		return "", newError(http.StatusBadRequest, "invalid_request", "path must be an absolute path")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", newError(http.StatusBadRequest, "invalid_request", "path must not contain '..'")
		}
	}
	clean := path.Clean(p)
	for _, root := range fileRoots {
		if clean == root || strings.HasPrefix(clean, root+"/") {
			return clean, nil
		}
	}
	return "", newError(http.StatusBadRequest, "invalid_request", "path must be under "+strings.Join(fileRoots, ", "))
}

// uploadFile is PUT /api/v1/instances/{id}/files?path=P: the body becomes the file
// P (parents created; mode from ?mode=, default 0644), owned by the sandbox user.
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) {
	p, err := checkFilePath(r.URL.Query().Get("path"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if p == path.Clean(p) && isRoot(p) {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "path names a directory root; give a file path"))
		return
	}
	mode := int64(0o644)
	if m := r.URL.Query().Get("mode"); m != "" {
		v, err := strconv.ParseInt(m, 8, 32)
		if err != nil || v < 0 || v > 0o777 {
			s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "mode must be octal permission bits, e.g. 755"))
			return
		}
		mode = v
	}
	if r.ContentLength > maxUploadBytes {
		s.writeError(w, r, uploadTooLarge())
		return
	}
	body := http.MaxBytesReader(w, r.Body, maxUploadBytes)
	size := r.ContentLength
	var src io.Reader = body
	if size < 0 {
		// No length given (chunked): the file goes to disk first, to learn it,
		// never whole into memory.
		f, err := os.CreateTemp("", "faas-upload-*")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if size, err = io.Copy(f, body); err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			s.writeError(w, r, bodyError(err))
			return
		}
		src = f
	}
	// The file is streamed into the instance as a one-entry tar archive, as it
	// arrives: the server holds a few buffers of it, not the file.
	pr, pw := io.Pipe()
	var copyErr error
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		tw := tar.NewWriter(pw)
		copyErr = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: size, Typeflag: tar.TypeReg, ModTime: time.Now(), Uid: engine.UserUID, Gid: engine.UserGID})
		if copyErr == nil {
			_, copyErr = io.CopyN(tw, src, size)
		}
		if copyErr == nil {
			copyErr = tw.Close()
		}
		pw.CloseWithError(copyErr)
	}()
	n, err := s.engine.UploadStream(r.Context(), principalFrom(r.Context()).Account, r.PathValue("id"), pr)
	pr.CloseWithError(errUploadEnded)
	<-copied
	if copyErr != nil && !errors.Is(copyErr, errUploadEnded) {
		err = bodyError(copyErr) // the client's body, not the archive, failed
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"path": p, "size": size, "entries": n})
}

// readRecorder reads through r and keeps the first error other than io.EOF:
// whether a request failed on reading its body rather than on what it held.
type readRecorder struct {
	r   io.Reader
	err error
}

func (rr *readRecorder) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF && rr.err == nil {
		rr.err = err
	}
	return n, err
}

// errUploadEnded stops the copy of an upload whose unpacking has ended.
var errUploadEnded = errors.New("upload ended")

func uploadTooLarge() error {
	return newError(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("files are limited to %d bytes", maxUploadBytes))
}

// bodyError turns an error reading an upload's body into the client's error.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return uploadTooLarge()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return newError(http.StatusBadRequest, "invalid_request", "the body ended before its Content-Length")
	}
	return newError(http.StatusBadRequest, "invalid_request", "reading the body: "+err.Error())
}

func isRoot(p string) bool {
	for _, root := range fileRoots {
		if p == root {
			return true
		}
	}
	return false
}

// uploadArchive is POST /api/v1/instances/{id}/files/archive?dest=D (and
// .../sync, with ?delete=true to remove what the archive lacks): the tar body
// is unpacked under D.
func (s *Server) uploadArchive(sync bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		dest := r.URL.Query().Get("dest")
		if dest == "" {
			dest = "/workspace"
		}
		dest, err := checkFilePath(dest)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		del := sync && r.URL.Query().Get("delete") == "true"
		body := &readRecorder{r: http.MaxBytesReader(w, r.Body, maxUploadBytes)}
		n, err := s.engine.UploadArchive(r.Context(), principalFrom(r.Context()).Account, r.PathValue("id"), dest, body, del)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(body.err, &tooLarge) {
				err = uploadTooLarge() // the body, not the archive
			}
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"dest": dest, "entries": n})
	}
}

// download is GET /api/v1/instances/{id}/files?path=P: a file's content, or with
// ?format=tar (always, for a directory) a tar archive of it.
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	// Read where files may be written (the places of the user's work): not the
	// image's own files, and not /proc, which is no archive's business.
	p, err := checkFilePath(r.URL.Query().Get("path"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p = path.Clean(p)
	asTar := r.URL.Query().Get("format") == "tar"
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := s.engine.DownloadArchive(r.Context(), principalFrom(r.Context()).Account, r.PathValue("id"), p, pw)
		pw.CloseWithError(err)
		errc <- err
	}()
	defer pr.Close()
	if asTar {
		// The first bytes decide between an error answer and the archive.
		var head [512]byte
		n, rerr := io.ReadFull(pr, head[:])
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			if err := <-errc; err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if n == len(head) && bytes.Count(head[:], []byte{0}) == len(head) {
			// The end-of-archive block first: an empty archive, nothing at p.
			s.writeError(w, r, newError(http.StatusNotFound, "not_found", "no file or directory at "+p))
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(p)+".tar"))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(head[:n])
		_, _ = io.Copy(w, pr)
		return
	}
	tr := tar.NewReader(pr)
	hdr, err := tr.Next()
	if err != nil {
		if eerr := <-errc; eerr != nil {
			s.writeError(w, r, eerr)
			return
		}
		s.writeError(w, r, newError(http.StatusNotFound, "not_found", "no file at "+p))
		return
	}
	if hdr.Typeflag != tar.TypeReg {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", p+" is not a regular file; ask for ?format=tar"))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(hdr.Size, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, tr)
}
