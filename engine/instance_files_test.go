package engine

import (
	"archive/tar"
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// TestRebase: entries move under dest; names that are absolute or climb out,
// other entry types, and content over the upload limit are refused.
func TestRebase(t *testing.T) {
	archive := func(hdrs ...*tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hdrs {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write(bytes.Repeat([]byte("x"), int(min(h.Size, 16))))
		}
		tw.Close()
		return b.Bytes()
	}
	var out bytes.Buffer
	in := archive(&tar.Header{Name: "./a/", Typeflag: tar.TypeDir, Mode: 0o4755},
		&tar.Header{Name: "a/f", Typeflag: tar.TypeReg, Size: 3, Mode: 0o6644})
	if err := rebase(bytes.NewReader(in), &out, "/workspace/sub"); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+strconv.FormatInt(h.Mode, 8))
	}
	if strings.Join(got, ", ") != "workspace/sub/a/ 755, workspace/sub/a/f 644" {
		t.Errorf("rebased: %v", got)
	}
	for _, c := range []struct {
		hdr  *tar.Header
		want string
	}{
		{&tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg}, "names must be relative"},
		{&tar.Header{Name: "a/../../b", Typeflag: tar.TypeReg}, "must not contain '..'"},
		{&tar.Header{Name: "dev", Typeflag: tar.TypeChar}, "only files, directories and symlinks"},
		{&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: maxUploadBytes + 1}, "bytes of content"},
	} {
		err := rebase(bytes.NewReader(archive(c.hdr)), io.Discard, "/tmp")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.hdr.Name, err, c.want)
		}
	}
	if err := rebase(strings.NewReader("not a tar archive, just text that goes on for a while"), io.Discard, "/tmp"); err == nil {
		t.Error("text accepted as an archive")
	}
}
