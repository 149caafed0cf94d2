#!/usr/bin/env python3
"""Make ESM fixtures with an independent toolchain: the same libraries svm-tools uses
(PyCryptodome as `Cryptodome`, libfdt's Python binding) plus GNU cpio, so the Rust parser
(`uv::esm`) and builder (`xtask::esm`) are checked against another implementation
of the format rather than only against each other. Written for pefbox from the format's
description (see crates/uv/src/esm.rs); it does not use svm-tools code.

Debian: apt-get install python3-pycryptodome python3-libfdt cpio
Run from crates/uv/testdata/ (pyenv pythons need PYTHONPATH=/usr/lib/python3/dist-packages):
    python3 make_esm_fixture.py
Writes: esm-pycryptodome.dtb (the blob), esm-pycryptodome.initrd (GNU cpio of
opt/ibm/pef/test_esmb.dtb + the SVM initrd), esm-pycryptodome.key (the symmetric key,
hex), esm-test-rsa.pem (a TEST-ONLY RSA-2048 private key, whose public half the lockboxes
are sealed to, so tests can unwrap them).
The SVM components are generated (see svm_parts) and recomputed by the Rust tests.
"""

import os
import subprocess
import tempfile

import libfdt
from Cryptodome.Cipher import AES, PKCS1_OAEP
from Cryptodome.Hash import SHA256, SHA512
from Cryptodome.PublicKey import RSA

RTAS = bytes.fromhex("7c641b783c6000006063f000440000224e800020")


def svm_parts():
    kernel = bytes(range(256)) * 40
    initrd = b"pefbox svm initrd\n" * 50
    bootargs = "console=hvc0 root=/dev/ram0 svm=on"
    return kernel, initrd, bootargs


def gcm(key, plain):
    c = AES.new(key, AES.MODE_GCM)  # default nonce: 16 random bytes
    ct, mac = c.encrypt_and_digest(plain)
    return c.nonce, ct, mac


def put_sealed(fdt, parent, name, key, plain):
    off = fdt.add_subnode(parent, name)
    fdt.setprop_str(off, "algorithm", "AES256-GCM")
    fdt.setprop_str(off, "untrusted-comment", "fixture")
    iv, ct, mac = gcm(key, plain)
    fdt.setprop(off, "ciphertext", ct)
    fdt.setprop(off, "iv", iv)
    fdt.setprop(off, "mac", mac)


def main():
    kernel, initrd, bootargs = svm_parts()
    rsa = RSA.generate(2048)
    pub_pem = rsa.publickey().export_key() + b"\n"
    symkey = os.urandom(32)

    dig = libfdt.Fdt.create_empty_tree(8192)
    dig.setprop_str(0, "compatible", "ibm,esm")
    d = dig.add_subnode(0, "digests")
    dig.setprop_str(d, "algorithm", "SHA512")
    dig.setprop(d, "rtas", SHA512.new(RTAS).digest())
    dig.setprop(d, "kernel", SHA512.new(kernel).digest())
    dig.setprop(d, "kernel-size", len(kernel).to_bytes(4, "big"))
    dig.setprop(d, "initrd", SHA512.new(initrd).digest())
    dig.setprop(d, "bootargs", SHA512.new(bootargs.encode()).digest())
    dig.pack()

    files = libfdt.Fdt.create_empty_tree(8192)
    files.setprop_str(0, "compatible", "ibm,esm-file")
    fo = files.add_subnode(0, "files")
    put_sealed(files, fo, "file-1", symkey, b"secret attachment\n")
    files.pack()

    esm = libfdt.Fdt.create_empty_tree(65536)
    esm.setprop_str(0, "compatible", "ibm,esm")
    f = esm.add_subnode(0, "file")
    esm.setprop(f, "files-fdt", bytes(files.as_bytearray()))
    g = esm.add_subnode(0, "digest")
    put_sealed(esm, g, "digests-fdt", symkey, bytes(dig.as_bytearray()))
    lbs = esm.add_subnode(0, "lockboxes")
    for name in ("origin-lockbox", "lockbox-1"):
        lb = esm.add_subnode(lbs, name)
        esm.setprop_str(lb, "untrusted-comment", name)
        enc = PKCS1_OAEP.new(rsa.publickey(), hashAlgo=SHA256).encrypt(symkey)
        esm.setprop(lb, "encrypted-symkey", enc)
        fp = esm.add_subnode(lb, "pubkey-fingerprint")
        esm.setprop_str(fp, "algorithm", "SHA256")
        esm.setprop(fp, "hash", SHA256.new(pub_pem).digest())
    esm.pack()
    blob = bytes(esm.as_bytearray())

    with tempfile.TemporaryDirectory() as tmp:
        pef = os.path.join(tmp, "root", "opt", "ibm", "pef")
        os.makedirs(pef)
        with open(os.path.join(pef, "test_esmb.dtb"), "wb") as out:
            out.write(blob)
        find = subprocess.run(["find", ".", "-print0"], cwd=os.path.join(tmp, "root"),
                              check=True, capture_output=True).stdout
        cpio = subprocess.run(["cpio", "--null", "--create", "--quiet", "--format=newc"],
                              cwd=os.path.join(tmp, "root"), input=find, check=True,
                              capture_output=True).stdout

    with open("esm-pycryptodome.dtb", "wb") as out:
        out.write(blob)
    with open("esm-pycryptodome.initrd", "wb") as out:
        out.write(cpio + initrd)
    with open("esm-pycryptodome.key", "w") as out:
        out.write(symkey.hex() + "\n")
    with open("esm-test-rsa.pem", "wb") as out:
        out.write(rsa.export_key())


if __name__ == "__main__":
    main()
