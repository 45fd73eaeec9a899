# soundnet_find_python(OUT MODULE...): the first of ${SOUNDNET_PYTHON}, /usr/bin/python3 (Debian's
# python3-numpy and python3-torch install for it) and the python3 on PATH that imports every
# MODULE; "" when none does. The tests prefer one with numpy and torch, else numpy alone; the
# fuzz seeds need numpy.
function(soundnet_find_python out)
  find_program(_soundnet_python_on_path python3)
  set(found "")
  foreach(candidate IN ITEMS "${SOUNDNET_PYTHON}" /usr/bin/python3 "${_soundnet_python_on_path}")
    if(candidate AND NOT found)
      set(ok TRUE)
      foreach(module IN LISTS ARGN)
        execute_process(COMMAND ${candidate} -c "import ${module}" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
        if(NOT rc EQUAL 0)
          set(ok FALSE)
        endif()
      endforeach()
      if(ok)
        set(found ${candidate})
      endif()
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()
