# A package that references another store path, built offline by the real Nix of the test
# host (see ../../nix-fixture.sh). Its output holds the leaf's path in a file and in a symlink,
# so Nix records a real reference.
let
  leaf = builtins.path { path = ./leaf; name = "flipside-test-leaf"; };
in
derivation {
  name = "flipside-test-app-1.0";
  system = builtins.currentSystem;
  # The builder's PATH is empty: call tools by absolute path.
  builder = "/bin/sh";
  args = [
    "-c"
    ''
      /bin/mkdir -p $out/bin $out/share
      /bin/echo "data at ${leaf}/hello.txt" > $out/share/where
      /bin/ln -s ${leaf}/hello.txt $out/share/hello.txt
      /bin/printf '#!/bin/sh\necho hi\n' > $out/bin/app
      /bin/chmod 0555 $out/bin/app
    ''
  ];
}
