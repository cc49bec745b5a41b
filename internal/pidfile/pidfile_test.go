package pidfile

import (
	"os"
	"testing"
)

func TestPidFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := dir + "/precious"
	os.WriteFile(target, []byte("keep me"), 0o600)
	link := dir + "/hcproxy.pid"
	os.Symlink(target, link)
	if _, err := Lock(link); err == nil {
		t.Fatal("the pid file was opened through a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Fatal("the symlink's target was overwritten")
	}
	fl, err := Lock(dir + "/real.pid")
	if err != nil {
		t.Fatal(err)
	}
	defer Unlock(fl)
	if pid, err := Read(dir + "/real.pid"); err != nil || pid != os.Getpid() {
		t.Fatalf("pid file: %d %v", pid, err)
	}
}
