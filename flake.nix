{
  description = "nixipfs: publish Nix build outputs to IPFS and serve them back to Nix as a binary cache";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        nixipfs = pkgs.callPackage ./nix/package.nix { };
        default = nixipfs;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/nixipfs";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          # A current Node: Node 20 needs the two workarounds noted in package.json.
          packages = [ pkgs.nodejs_24 pkgs.nix pkgs.nginx pkgs.wrk pkgs.curl ];
        };
      });

      nixosModules.default = import ./nix/module.nix { inherit self; };

      # NixOS VM tests (need KVM): a builder, a mirror and a client substitute through nixipfs.
      checks = nixpkgs.lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: {
        substitute = import ./nix/tests/substitute.nix { inherit self; pkgs = nixpkgs.legacyPackages.${system}; };
      });
    };
}
