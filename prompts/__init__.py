"""The words the receptionist speaks and follows, as templated files, plus a tiny loader."""
