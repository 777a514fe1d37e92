"""test_vmem.py: a VM defined with memory_max_mib (cella vm create
--memory-max) gets a virtio-mem device; `cella vm set NAME --memory N` on
the running VM asks the worker for N - startup MiB of hot-plugged memory
and the guest plugs (and later unplugs) it, shown in the VM's metrics
(JSON and Prometheus) while the definition keeps its startup memory. Sizes
past memory_max_mib, below the startup memory or not in whole 2 MiB blocks,
a running VM without memory_max_mib, and bad memory_max_mib values are
refused naming the field. On a stopped VM --memory changes the startup
memory as before. The field survives a restart of cellad (its store)."""


from cellad import Daemon, check, main, wait_vm_metric


def wait_vmem(d, name, key, want, timeout=60):
    return wait_vm_metric(d, name, "virtio_mem", key, want, timeout)


def refused(d, name, mib, status, text):
    p = d.cli("vm", "set", name, "--memory", str(mib), expect=None)
    check(p.returncode != 0 and text in p.stderr, f"--memory {mib} refused: {p.stderr.strip()}")
    r = d.request("PATCH", f"/v1/vms/{name}", {"memory_mib": mib})
    check(r.status == status and r.json["error"]["field"] == "memory_mib",
          f"PATCH memory_mib {mib}: {r.status} {r.body}")


def test(args):
    with Daemon(args) as d:
        kernel = args["guests"]["vmem"]
        for bad in (64, 63, 129, -2, "128"):
            r = d.request("POST", "/v1/vms", {"name": "bad", "kernel": kernel, "memory_mib": 64,
                                              "memory_max_mib": bad})
            check(r.status == 400 and r.json["error"]["field"] == "memory_max_mib",
                  f"memory_max_mib {bad!r} refused: {r.status} {r.body}")
        d.cli("vm", "create", "v1", "--kernel", kernel, "--memory", "64", "--memory-max", "128")
        check(d.vm("v1")["memory_max_mib"] == 128, "definition has memory_max_mib 128")
        # Stopped: --memory is the startup memory, as before.
        d.cli("vm", "set", "v1", "--memory", "70")
        check(d.vm("v1")["memory_mib"] == 70, "stopped VM: startup memory changed")
        d.cli("vm", "set", "v1", "--memory", "64")

        d.action("v1", "start")
        d.wait_console("v1", "vmem: region 64 MiB at 0x100000000", 60)
        d.wait_console("v1", "vmem: plugged 0 MiB", 60)
        d.cli("vm", "set", "v1", "--memory", "96")
        d.wait_console("v1", "vmem: plugged 32 MiB", 60)
        v = wait_vmem(d, "v1", "plugged_mib", 32)
        check(v["requested_mib"] == 32 and v["region_mib"] == 64, f"metrics virtio_mem {v}")
        text = d.get("/metrics").body
        check(f'cella_vm_memory_plugged_bytes{{vm="v1"}} {32 << 20}' in text,
              "Prometheus plugged bytes")
        check(d.vm("v1")["memory_mib"] == 64, "the definition keeps the startup memory")

        refused(d, "v1", 130, 400, "past memory_max_mib")
        refused(d, "v1", 32, 400, "below the VM's startup memory")
        refused(d, "v1", 97, 400, "whole 2 MiB blocks")
        r = d.request("PATCH", "/v1/vms/v1", {"memory_mib": 80, "cpus": 2})
        check(r.status == 409, f"memory_mib with another field on a running VM: {r.status}")

        r = d.request("PATCH", "/v1/vms/v1", {"memory_mib": 80})
        check(r.status == 200 and r.json["virtio_mem"]["requested_mib"] == 16,
              f"PATCH memory_mib 80: {r.status} {r.body}")
        d.wait_console("v1", "vmem: plugged 16 MiB", 60)
        wait_vmem(d, "v1", "plugged_mib", 16)

        d.define("e1", "echo")
        d.action("e1", "start")
        r = d.request("PATCH", "/v1/vms/e1", {"memory_mib": 256})
        check(r.status == 409 and "memory_max_mib" in r.json["error"]["message"],
              f"running VM without memory_max_mib: {r.status} {r.body}")
        check("virtio_mem" not in d.get("/v1/vms/e1/metrics").json,
              "no virtio_mem metrics without it")
        for n in ("v1", "e1"):
            d.action(n, "stop", {"timeout_s": 0}, expect=202)
            d.wait_state(n, ["stopped"])

        d.stop()
        d.start()
        check(d.vm("v1")["memory_max_mib"] == 128 and d.vm("v1")["memory_mib"] == 64,
              "memory_max_mib kept by the store")
        r = d.request("PATCH", "/v1/vms/v1", {"memory_max_mib": 0})
        check(r.status == 200 and d.vm("v1")["memory_max_mib"] == 0, "memory_max_mib back to 0")


if __name__ == "__main__":
    main(test)
