# NixOS VM test: a builder publishes what it builds (post-build hook), a
# mirror follows and pins the builder's cache over HTTP, and a client, which
# reaches only the mirror, substitutes the build through its own gateway.
# Needs nixpkgs and KVM: `nix build .#checks.x86_64-linux.substitute`.
{ self, pkgs }:

let
  # A key pair made for this test only (nix-store --generate-binary-cache-key).
  keyName = "nixipfs-vm-test-1";
  publicKey = "${keyName}:gJ4xquVoDoUGQcjNLHLDXvUuyEvvXXLoXadjatNzr5w=";
  secretKey = pkgs.writeText "nixipfs-vm-test.secret"
    "${keyName}:DnjEaQS0HdOawjLCAmxxKcy1HLOpILARDsBFyGgi8ISAnjGq5WgOhQZByM0scsNe9S7IS+9dcuhdp2Nq03OvnA==";
  # A derivation with no dependencies, so the builder needs no binary cache.
  hello = pkgs.writeText "hello.nix" ''
    derivation {
      name = "hello-nixipfs";
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [ "-c" "echo hello from nixipfs > $out" ];
    }
  '';
  common = {
    imports = [ self.nixosModules.default ];
    services.nixipfs.enable = true;
    services.nixipfs.openFirewall = true;
  };
in
pkgs.testers.runNixOSTest {
  name = "nixipfs-substitute";

  nodes = {
    builder = {
      imports = [ common ];
      services.nixipfs.gateway.listen = "0.0.0.0:8080";
      services.nixipfs.publishHook = { enable = true; secretKeyFile = secretKey; };
      networking.firewall.allowedTCPPorts = [ 8080 ];
    };
    mirror = {
      imports = [ common ];
      services.nixipfs.gateway.enable = false;
      services.nixipfs.httpGateways = [ "http://builder:8080" ];
      services.nixipfs.mirror = { enable = true; follow = [ publicKey ]; };
    };
    client = {
      imports = [ common ];
      services.nixipfs.httpGateways = [ "http://mirror:8081" ];
      services.nixipfs.gateway = { follow = [ publicKey ]; trust = [ publicKey ]; };
    };
  };

  testScript = ''
    start_all()
    builder.wait_for_unit("nixipfs-gateway.service")
    out = builder.succeed("nix-build --no-out-link ${hello}").strip()
    builder.wait_until_succeeds(f"curl -sf http://127.0.0.1:8080/{out[11:43]}.narinfo")

    mirror.wait_for_unit("nixipfs-mirror.service")
    mirror.wait_until_succeeds(f"curl -sf http://127.0.0.1:8081/{out[11:43]}.narinfo", timeout=120)

    client.wait_for_unit("nixipfs-gateway.service")
    client.wait_until_succeeds(f"curl -sf http://127.0.0.1:8080/{out[11:43]}.narinfo", timeout=120)
    client.succeed(f"nix-store --realise {out}")
    client.succeed(f"grep -qx 'hello from nixipfs' {out}")
  '';
}
