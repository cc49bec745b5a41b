package fleet

import (
	"testing"

	"hcproxy/internal/etcdtest"
)

// The fleet's tests run against a real etcd cluster (internal/etcdtest) and skip without it.
type cluster = etcdtest.Cluster

func startCluster(t testing.TB, n int) *cluster { return etcdtest.Start(t, n) }

func needEtcd(t testing.TB) { etcdtest.Need(t) }

func freePort(t testing.TB) string { return etcdtest.FreePort(t) }
