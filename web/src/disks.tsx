// disks.tsx: the images of cellad's storage locations with their chains,
// sizes and allocation, and the forms that create, grow, convert, back up
// and delete them (images.tsx); below, every VM's disks with their limits.
import { ImagesSection } from "./images";
import { Heading, StateBadge, useStore } from "./ui";

export function DisksPage() {
  const s = useStore();
  const rows = [...s.vms.values()].flatMap((v) => v.disks.map((d) => ({ vm: v, d })))
    .sort((a, b) => a.d.path.localeCompare(b.d.path));
  return (
    <section>
      <Heading>Disks</Heading>
      <ImagesSection />
      <h2>VM disks</h2>
      <p class="muted">Images attached to VMs. Each VM's disk page sets I/O limits; checkpoints add layers to a chain.</p>
      {!rows.length ? <p class="muted">No disks.</p> : (
        <div class="table-wrap"><table>
          <thead><tr><th scope="col">Image (top layer)</th><th scope="col">Disk</th><th scope="col">Format</th>
            <th scope="col">VM</th><th scope="col">State</th><th scope="col">Limits</th></tr></thead>
          <tbody>{rows.map(({ vm, d }) => (
            <tr><td class="path">{d.path}</td><td>{d.id}{d.readonly ? " (ro)" : ""}</td><td>{d.format}</td>
              <td><a href={`#/vms/${encodeURIComponent(vm.name)}/disks`}>{vm.name}</a></td><td><StateBadge state={vm.state} /></td>
              <td>{d.qos ? Object.entries(d.qos).filter(([, x]) => x).map(([k, x]) => `${k} ${x}`).join(", ") || "none" : "none"}</td></tr>))}
          </tbody>
        </table></div>
      )}
    </section>
  );
}
