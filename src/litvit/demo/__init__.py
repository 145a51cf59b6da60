"""`litvit demo`: a local web page that shows what a LIT / LITv2 model sees in one image (see docs/demo.md).

Empty on purpose: the command module (litvit.demo.cli) must import without torch; app and server import it."""
