# dyt_protoc(<proto, relative to the project root> <out var>): C++ code for a
# .proto compiled with the project root as import root, so its descriptor is
# registered under that path (another .proto imports it so) and the code lands
# at ${PROJECT_BINARY_DIR}/<dir>/<name>.pb.{h,cc}, included as "<dir>/<name>.pb.h".
# Sets <out var> to the generated .cc (compiled without warnings: not ours).
function(dyt_protoc proto out_var)
  get_filename_component(dir ${proto} DIRECTORY)
  get_filename_component(name ${proto} NAME_WE)
  set(out ${PROJECT_BINARY_DIR}/${dir})
  file(MAKE_DIRECTORY ${out})
  add_custom_command(
    OUTPUT ${out}/${name}.pb.h ${out}/${name}.pb.cc
    COMMAND protobuf::protoc
    ARGS --cpp_out=${PROJECT_BINARY_DIR} -I ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/${proto}
    DEPENDS ${PROJECT_SOURCE_DIR}/${proto} protobuf::protoc
    COMMENT "protoc ${proto}"
    VERBATIM)
  set_source_files_properties(${out}/${name}.pb.cc PROPERTIES COMPILE_OPTIONS "-w")
  set(${out_var} ${out}/${name}.pb.cc PARENT_SCOPE)
endfunction()
