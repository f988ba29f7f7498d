process EVOSCAN_MASK {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(windows), path(rmsk)

    output:
    tuple val(meta), path("${meta.id}.masks.h5"), emit: masks
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    def args = task.ext.args ?: ''
    def repeats = rmsk ? "--rmsk ${rmsk}" : ''
    """
    evoscan mask --windows ${windows} ${repeats} ${args} -o ${meta.id}.masks.h5
    """

    stub:
    """
    touch ${meta.id}.masks.h5
    """
}
