# SPDX-License-Identifier: MIT
# cmake -DSRC=file.c -DDOC=file.md -P doc_check.cmake
# Fails unless DOC holds the whole of SRC verbatim, so that the example shown
# in the document is the one that is compiled and tested.
file(READ "${SRC}" src)
# The file's licence line is not part of the example the document shows.
string(REGEX REPLACE "^/\\* SPDX-License-Identifier: [^\n]*\n" "" src "${src}")
file(READ "${DOC}" doc)
string(FIND "${doc}" "${src}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "${DOC} does not hold ${SRC} verbatim: copy the file into it again")
endif()
