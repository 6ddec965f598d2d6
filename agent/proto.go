// Package agent owns the program that runs as PID 1 inside every sandbox and the
// framed protocol the host speaks with it.
//
// The agent runs the processes the host asks for (each with its own stdout, stderr,
// stdin, environment, working directory, limits and timeout), streams their output as
// it is written, reaps every orphan, and reports each process's exit status and
// resource usage. The host side of the protocol is Conn.
//
// The protocol runs over any byte stream (the sandbox's stdin and stdout). A frame is
//
//	length uint32 (big endian; counts the bytes after itself)
//	type   uint8
//	id     uint32 (the execution the frame belongs to; 0 for the channel itself)
//	payload
//
// Control payloads are JSON; stdout, stderr and stdin payloads are raw bytes. The host
// opens (and, after a checkpoint is restored onto new pipes, re-opens) the channel with
// a Hello frame carrying a nonce; the agent answers Ready with the same nonce, so any
// bytes left over from before the restore can be told apart from the new channel.
package agent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
)

// FrameType says what a frame carries.
type FrameType uint8

// Frame types. Host to agent: Hello, Exec, Stdin, StdinClose, Kill, Warm, Reset.
// Agent to host: Ready, Started, Stdout, Stderr, Exit, Log, Done.
const (
	FrameHello      FrameType = 1
	FrameExec       FrameType = 2
	FrameStdin      FrameType = 3
	FrameStdinClose FrameType = 4
	FrameKill       FrameType = 5
	// FrameWarm starts a language's zygote (JSON Warm); answered by Done.
	FrameWarm FrameType = 6
	// FrameReset kills every process of the sandbox user and empties the
	// directories it can write, so the sandbox can serve a next execution as if
	// new; answered by Done.
	FrameReset FrameType = 7

	// FrameResize changes the terminal size of an execution with a PTY (JSON
	// Winsize); no answer.
	FrameResize FrameType = 8
	// FrameTunnelOpen asks the agent to connect to a TCP port on the sandbox's
	// loopback (JSON TunnelOpen), for a tunnel of the frame's id; answered by
	// FrameTunnelReady. FrameTunnelData carries bytes and FrameTunnelClose ends a
	// tunnel, in both directions (payload "w": no more data from the sender, the
	// other direction goes on; empty: the tunnel is closed).
	FrameTunnelOpen  FrameType = 9
	FrameTunnelData  FrameType = 10
	FrameTunnelClose FrameType = 11

	FrameReady   FrameType = 64
	FrameStarted FrameType = 65
	FrameStdout  FrameType = 66
	FrameStderr  FrameType = 67
	FrameExit    FrameType = 68
	FrameLog     FrameType = 69
	FrameDone    FrameType = 70
	// FrameTunnelReady answers FrameTunnelOpen (JSON Done: Error says why not).
	FrameTunnelReady FrameType = 71
)

// Winsize is a terminal size.
type Winsize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// PTY asks for an execution on a pseudo-terminal: its stdin, stdout and stderr
// are the terminal, so its output all comes as stdout.
type PTY struct {
	Winsize
	Term string `json:"term,omitempty"` // TERM; default xterm-256color
}

// TunnelOpen asks for a TCP connection to a port on the sandbox's loopback.
type TunnelOpen struct {
	Port int `json:"port"`
}

const headerSize = 9

// MaxPayload bounds one frame's payload from the agent (the host reads no
// larger); larger data is split across frames.
const MaxPayload = 1 << 20

// MaxRequestPayload bounds a frame from the host, which writes an exec request
// whole (WriteWholeFrame): its code, argv and environment, JSON-escaped, can
// pass MaxPayload.
const MaxRequestPayload = 16 << 20

// ErrFrameTooLarge is returned when a peer announces a frame above the limit.
var ErrFrameTooLarge = errors.New("agent: frame too large")

// Frame is one decoded protocol frame.
type Frame struct {
	Type    FrameType
	ID      uint32
	Payload []byte
}

// FrameWriter writes frames; it is safe for concurrent use.
type FrameWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	hdr [headerSize]byte
}

// NewFrameWriter returns a FrameWriter on w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	return &FrameWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// WriteWholeFrame writes and flushes one frame from the host that is never
// split (an exec request), of at most MaxRequestPayload.
func (fw *FrameWriter) WriteWholeFrame(t FrameType, id uint32, payload []byte) error {
	if len(payload) > MaxRequestPayload {
		return ErrFrameTooLarge
	}
	return fw.write(t, id, payload, len(payload))
}

// WriteFrame writes and flushes one frame, splitting payloads above MaxPayload.
func (fw *FrameWriter) WriteFrame(t FrameType, id uint32, payload []byte) error {
	return fw.write(t, id, payload, MaxPayload)
}

// write writes payload in frames of at most limit bytes, and flushes.
func (fw *FrameWriter) write(t FrameType, id uint32, payload []byte, limit int) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for {
		chunk := payload
		if len(chunk) > limit {
			chunk = chunk[:limit]
		}
		binary.BigEndian.PutUint32(fw.hdr[0:4], uint32(len(chunk)+5))
		fw.hdr[4] = byte(t)
		binary.BigEndian.PutUint32(fw.hdr[5:9], id)
		if _, err := fw.w.Write(fw.hdr[:]); err != nil {
			return err
		}
		if _, err := fw.w.Write(chunk); err != nil {
			return err
		}
		payload = payload[len(chunk):]
		if len(payload) == 0 {
			return fw.w.Flush()
		}
	}
}

// FrameReader reads frames. It is not safe for concurrent use.
type FrameReader struct {
	r   *bufio.Reader
	hdr [headerSize]byte
	max uint32
}

// NewFrameReader returns a FrameReader on r for frames of at most MaxPayload.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), max: MaxPayload}
}

// NewRequestReader returns a FrameReader on r for frames from the host (at most
// MaxRequestPayload).
func NewRequestReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), max: MaxRequestPayload}
}

// ReadFrame reads the next frame. The payload is a fresh slice the caller may keep.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[0:4])
	if n < 5 {
		return Frame{}, fmt.Errorf("agent: malformed frame length %d", n)
	}
	if n-5 > fr.max {
		return Frame{}, ErrFrameTooLarge
	}
	f := Frame{Type: FrameType(fr.hdr[4]), ID: binary.BigEndian.Uint32(fr.hdr[5:9])}
	f.Payload = make([]byte, n-5)
	if _, err := io.ReadFull(fr.r, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}

// Hello opens or re-opens the channel.
type Hello struct {
	Nonce string `json:"nonce"`
}

// Ready answers Hello.
type Ready struct {
	Nonce   string `json:"nonce"`
	Version string `json:"version"`
	// Cgroups reports whether per-execution process accounting (a pids cgroup inside
	// the sandbox) is available; without it only the process group is tracked.
	Cgroups bool `json:"cgroups"`
}

// Warm asks the agent to have a language's zygote ready for processes of the
// given identity and limits (those of ExecRequest; a request with others is run
// without the zygote).
type Warm struct {
	Language     string `json:"language"`
	UID          int    `json:"uid"`
	GID          int    `json:"gid"`
	MaxProcs     int    `json:"max_procs"`
	MaxOpenFiles int    `json:"max_open_files"`
	MaxFileBytes int64  `json:"max_file_bytes"`
	// Env is the environment (KEY=value) most of these processes get: a zygote's
	// standbys take it ahead, so a request with the same one need not change it.
	// A hint, not part of what a zygote serves (see sameProcesses).
	Env []string `json:"env,omitempty"`
}

// sameProcesses reports whether w and o ask for processes of the same identity
// and limits (Env aside).
func (w Warm) sameProcesses(o Warm) bool {
	w.Env, o.Env = nil, nil
	return reflect.DeepEqual(w, o)
}

// Done answers Warm and Reset (by the id of the request frame).
type Done struct {
	Error string `json:"error,omitempty"`
	// ReapedPeakKB (Reset) is the highest peak resident memory, in KiB, of the
	// processes since the last reset that reported their own end (a standby's
	// report, which its code can forge), as the kernel counted it when they were
	// reaped.
	ReapedPeakKB int64 `json:"reaped_peak_kb,omitempty"`
}

// ZygoteLanguages are the languages whose code the agent can run in a process
// prepared ahead of the request (ExecRequest.Zygote): forked from a pre-started
// interpreter (python), or started ahead (node and bash, which cannot fork).
var ZygoteLanguages = []string{"python", "node", "bash"}

// ExecRequest asks the agent to start one process.
type ExecRequest struct {
	Argv []string `json:"argv"`
	// Zygote, when set to one of ZygoteLanguages, runs Code in a process prepared
	// ahead by that language's zygote instead of executing Argv (Argv is the
	// fallback if the zygote cannot be started).
	Zygote string `json:"zygote,omitempty"`
	Code   string `json:"code,omitempty"`
	// Session, when set, runs Code in the live interpreter of that name (started on
	// first use, for Language, one of SessionLanguages) instead of a new process:
	// its globals, imports and open files stay for the next execution in the
	// session. Argv and Stdin are ignored; a timeout interrupts the cell and, if it
	// does not stop, ends the interpreter.
	Session  string   `json:"session,omitempty"`
	Language string   `json:"language,omitempty"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir"`
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	// Stdin says the host will send Stdin frames (ending with StdinClose); without it
	// the process reads from /dev/null.
	Stdin bool `json:"stdin"`
	// TimeoutMS kills the whole process tree after this long; 0 means no timeout.
	TimeoutMS int64 `json:"timeout_ms"`
	// MaxOutputBytes caps what is forwarded of stdout and of stderr each; the rest
	// is read and counted but dropped. 0 means no cap.
	MaxOutputBytes int64 `json:"max_output_bytes"`
	// MaxProcs caps the processes (and threads) the user may have at once; 0: no cap.
	MaxProcs int `json:"max_procs"`
	// MaxOpenFiles caps open file descriptors per process; 0: the agent's default.
	MaxOpenFiles int `json:"max_open_files"`
	// MaxFileBytes caps the size of any one file the process writes; 0: no cap.
	MaxFileBytes int64 `json:"max_file_bytes"`
	// PTY, when set, runs the process on a pseudo-terminal of that size.
	PTY *PTY `json:"pty,omitempty"`
	// KeepBackground lets what the process started in the background run on
	// after it exits (for long-lived sandboxes); its output stops being read.
	KeepBackground bool `json:"keep_background,omitempty"`
}

// Started reports that the process runs.
type Started struct {
	PID int `json:"pid"`
}

// ExitStatus reports how a process ended and what it used.
type ExitStatus struct {
	// ExitCode is the process's exit code, or 128+signal when a signal ended it,
	// or -1 when it never started.
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Killed   bool   `json:"killed,omitempty"`
	// Error is set when the process could not be started.
	Error           string `json:"error,omitempty"`
	UserMS          int64  `json:"user_ms"`
	SystemMS        int64  `json:"system_ms"`
	MaxRSSKB        int64  `json:"max_rss_kb"`
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	DurationMS      int64  `json:"duration_ms"`
}
