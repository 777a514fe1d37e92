"""test_balloon.py: a VM defined with "balloon": true (cella vm create
--balloon) gets a virtio-balloon; `cella vm set NAME --balloon-target MIB`
(PUT /v1/vms/{name}/balloon) moves the guest's balloon, and the VM's
metrics (JSON and Prometheus) show the pages it gave back; targets past the
VM's memory, on a VM without a balloon or not running, and the option at
create time are refused with clear errors."""

import json

from cellad import Daemon, check, main, wait_vm_metric


def wait_metric(d, name, key, want, timeout=30):
    return wait_vm_metric(d, name, "balloon", key, want, timeout)


def test(args):
    with Daemon(args) as d:
        kernel = args["guests"]["balloon"]
        d.cli("vm", "create", "b1", "--kernel", kernel, "--memory", "64", "--cmdline",
              "pool_mib=16 report_mib=4", "--balloon")
        check(d.vm("b1")["balloon"] is True, "definition has balloon: true")
        p = d.cli("vm", "set", "b1", "--balloon-target", "8", expect=None)
        check(p.returncode != 0 and "not running" in p.stderr, f"stopped VM refused: {p.stderr}")
        d.action("b1", "start")
        d.wait_console("b1", "balloon: ready")
        wait_metric(d, "b1", "reported_bytes", 4 << 20)

        p = d.cli("vm", "set", "b1", "--balloon-target", "8")
        check("balloon target 8 MiB" in p.stdout, f"cella vm set output: {p.stdout!r}")
        d.wait_console("b1", "balloon: actual 2048 pages")
        b = wait_metric(d, "b1", "inflated_bytes", 8 << 20)
        check(b["target_mib"] == 8, f"metrics balloon {b}")
        text = d.get("/metrics").body
        check(f'cella_vm_balloon_inflated_bytes{{vm="b1"}} {8 << 20}' in text and
              f'cella_vm_balloon_reported_bytes_total{{vm="b1"}} {4 << 20}' in text,
              "Prometheus balloon metrics")

        p = d.cli("vm", "set", "b1", "--balloon-target", "65", expect=None)
        check(p.returncode != 0 and "more than the VM's memory" in p.stderr,
              f"target past memory refused: {p.stderr}")
        r = d.request("PUT", "/v1/vms/b1/balloon", {"target_mib": 4, "extra": 1})
        check(r.status == 400, f"unknown field: {r.status}")
        r = d.request("PUT", "/v1/vms/b1/balloon", {"target_mib": "4"})
        check(r.status == 400 and r.json["error"]["field"] == "target_mib",
              f"wrong type: {r.status} {r.body}")
        r = d.request("PUT", "/v1/vms/b1/balloon", {"target_mib": 0})
        check(r.status == 200 and r.json["target_mib"] == 0, f"deflate: {r.status} {r.body}")
        d.wait_console("b1", "balloon: actual 0 pages")
        wait_metric(d, "b1", "inflated_bytes", 0)

        p = d.cli("vm", "create", "b2", "--kernel", kernel, "--balloon-target", "4",
                  expect=None)
        check(p.returncode != 0 and "--balloon-target" in p.stderr,
              f"--balloon-target at create refused: {p.stderr}")
        d.define("b3", "echo")
        d.action("b3", "start")
        r = d.request("PUT", "/v1/vms/b3/balloon", {"target_mib": 4})
        check(r.status == 409 and "no balloon" in r.body, f"VM without balloon: {r.status}")
        m = d.get("/v1/vms/b3/metrics").json
        check("balloon" not in m, "no balloon metrics without a balloon")
        for n in ("b1", "b3"):
            d.action(n, "stop", {"timeout_s": 0}, expect=202)


if __name__ == "__main__":
    main(test)
