# Runs PROGRAM MODE and passes only when it fails (non-zero exit) with EXPECT in its output:
# the sanitizer of this build caught the planted bug.
execute_process(COMMAND ${PROGRAM} ${MODE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${out}${err}" "${EXPECT}" at)
if(rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "the planted ${MODE} was not caught (exit ${rc}); output:\n${out}${err}")
endif()
message(STATUS "caught the planted ${MODE}: exit ${rc}, '${EXPECT}' reported")
